"""The lm-eval integration: the model ``achilles_masked`` (:mod:`.lm_model`, its masking arguments in
:mod:`.model_args`), the task table (:mod:`.tasks`), the data of the tasks in ``task_configs/`` (:mod:`.task_data`) and their pure scoring
functions (:mod:`.scoring`). See docs/cli.md and docs/protocols.md."""
