"""Data for the small lm-eval tasks used by tests/test_lm_model.py (written by this project)."""

import datasets

TEXTS = [
    "The river Seine flows through Paris before it reaches the English Channel at Le Havre .",
    "Photosynthesis converts light energy into chemical energy that is stored in sugar molecules .",
    "The orchestra tuned their instruments while the audience slowly found their seats in the hall .",
    "In 1969 , two astronauts walked on the surface of the Moon while a third stayed in orbit .",
]

PROMPTS = [
    "The capital of France is",
    "Water is made of hydrogen and",
    "The first three letters of the alphabet are",
    "One, two, three, four,",
]


def load_rolling(**_metadata):
    return {"test": datasets.Dataset.from_dict({"text": TEXTS})}


def load_gen(**_metadata):
    return {"test": datasets.Dataset.from_dict({"prompt": PROMPTS})}
