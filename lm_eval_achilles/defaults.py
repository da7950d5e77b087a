"""Defaults of the paper's method (section 4, "Implementation Details") and its probe text."""

#: Noise scale alpha of stage 1 (paper: 5).
ALPHA = 5.0
#: Number of noisy samples K of stage 1 (paper: 100).
SAMPLES = 100
#: Criticality threshold epsilon in orders of magnitude of perplexity (paper eq. 4: 1).
EPSILON = 1.0
#: Greedy step size Delta-n of stage 2 (paper: 1).
STEP = 1
#: Stage 2 stops after this many steps (the authors' code caps at 1000).
MAX_STEPS = 1000
#: How stage 2 walks the prefixes: "galloping" (sizes 1, 2, 4, ... then bisection; the paper's answer
#: whenever the curve is monotone, docs/method.md) or "linear" (the paper's one step at a time).
SEARCH = "galloping"
SEARCHES = ("galloping", "linear")
SEED = 42
#: Noisy samples per forward pass in stage 1 (does not change the ranking's meaning, only the noise chunks).
STAGE1_BATCH_SIZE = 25
#: Masked sets per batched forward in stage 2 and --minimize.
SEARCH_BATCH_SIZE = 8
#: --minimize evaluates at most this many candidate sets unless --max-evals says otherwise (docs/method.md).
MAX_EVALS = 1000
#: Perplexity texts are truncated to this many tokens (docs/protocols.md).
MAX_PPL_TOKENS = 512
#: The probe text is truncated to this many tokens (stage 1's memory grows with it; docs/method.md).
MAX_PROBE_TOKENS = 512
#: How many ranked neurons a mask file keeps (the authors keep the top 10 000).
RANKING_SIZE = 10_000
#: Below this many tokens the paper found the critical set unstable (T_min, appendix A.7).
MIN_PROBE_TOKENS = 10

#: The paper's probe: the WikiText-formatted "Bookends" paragraph (spaces before punctuation).
#: Its first 100 characters are the authors' text as recorded in their logs (docs/method.md); the
#: exact remainder is unknown, so the rest of this paragraph is this project's reconstruction in the
#: same WikiText style. The critical set does not depend on the exact wording (paper section 4.4).
PROBE_TEXT = (
    "Later reviews were more positive .  In just over 29 minutes , Bookends is stunning in its vision of "
    "a lifespan , from the restless optimism of youth to the quiet resignation of old age . Critics "
    "praised the album 's careful sequencing and its warm production , and several writers called it "
    "the duo 's most ambitious and cohesive record , a work that rewards repeated listening ."
)
