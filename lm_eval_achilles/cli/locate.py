"""``achilles locate``: find the critical neurons and write a mask file (exit 0 found, 1 none within the
step cap, 2 bad input)."""

from __future__ import annotations

from lm_eval_achilles.cli.common import (
    add_locator_arguments,
    add_model_arguments,
    check_modules_before_loading,
    load_from_args,
    locator_config,
)

HELP = "locate the critical neurons (the paper's two stages) and write a mask file"


def add_arguments(p):
    add_model_arguments(p)
    add_locator_arguments(p)
    p.add_argument("--out", required=True, help="mask file to write (JSON)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    from lm_eval_achilles.cli.summary import print_locate_summary
    from lm_eval_achilles.locator.locate import locate
    from lm_eval_achilles.mask.mask_file import save_mask
    from lm_eval_achilles.validate import check_output

    # everything that can be wrong is checked before the model is loaded
    cfg = locator_config(args)
    check_output(args.out, "file")
    check_modules_before_loading(args, cfg.modules)
    loaded = load_from_args(args)
    mask = locate(loaded, cfg)
    path = save_mask(mask, args.out)
    print_locate_summary(mask, loaded.display_name, path)
    return 0 if mask.critical.size > 0 else 1
