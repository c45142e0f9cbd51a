"""``python -m trainer``: see ``trainer/train.py`` for the launch commands;
``python -m trainer plan`` sizes a job (``trainer/plan.py``)."""

import sys

if sys.argv[1:2] == ["plan"]:
    from trainer.plan import main as plan_main

    raise SystemExit(plan_main(sys.argv[2:]))

from trainer.train import main

raise SystemExit(main())
