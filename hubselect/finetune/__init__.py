"""Stage 5, fine-tuning: LoRA training, scoring and publishing (``hubselect finetune``)."""

# * :mod:`hubselect.finetune.families`  every pipeline family's training quirks, in one place
# * :mod:`hubselect.finetune.data`      image–caption pairs for training and validation
# * :mod:`hubselect.finetune.trainer`   the training loop (peft LoRA, accelerate, resumable checkpoints)
# * :mod:`hubselect.finetune.scoring`   FID / KID / CMMD in a probe's embedding space
# * :mod:`hubselect.finetune.publish`   the adapter repo with its card, and the record
