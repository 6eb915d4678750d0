"""Label fraction 10 %, leave one site out, initialised from the session-11 SimSiam encoder
(and a random-init resnet10t probe as control). One thread."""

import sys

import torch

from glomkit.ssl.simsiam import make_backbone
from glomkit.studies.label_fraction import LabelFractionConfig, run_label_fraction

torch.set_num_threads(1)
out = "/work/runs/s11/label_fraction" + (
    "" if len(sys.argv) < 2 or sys.argv[1] == "10" else "/frac" + sys.argv[1].replace(",", "_")
)
enc = "/work/runs/s11/simsiam/simsiam_r10t_64.pt"
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
if seed:
    out += f"_seed{seed}"
fractions = tuple(float(f) for f in sys.argv[1].split(",")) if len(sys.argv) > 1 else (10.0,)
common = dict(
    data="../shared/data/bueno_pas",
    size=64,
    epochs=12,
    min_steps=60,
    batch=32,
    seed=seed,
    threads=1,
    leave_site_out=True,
    fractions=fractions,
)
cmd = "python /work/runs/s11/label_fraction/run.py " + " ".join(sys.argv[1:])
run_label_fraction(
    LabelFractionConfig(
        encoder=enc, out=f"{out}/simsiam", arms=("scratch", "probe", "finetune"), command=cmd, **common
    )
)
torch.manual_seed(seed)
net, _ = make_backbone("resnet10t")
torch.save(
    {"backbone": "resnet10t", "state_dict": net.state_dict(), "meta": {"size": 64}}, f"{out}/random_r10t.pt"
)
run_label_fraction(
    LabelFractionConfig(
        encoder=f"{out}/random_r10t.pt", out=f"{out}/random_probe", arms=("probe",), command=cmd, **common
    )
)
