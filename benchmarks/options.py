"""What the benchmarks can be asked for, without torch: scripts/benchmark.py checks its arguments against
these before it loads anything, so --help and mistakes are answered at once."""

MODES = ("ours", "naive")  # training: ldm's trainer step on cached latents, diffusers' example loop
SAMPLE_MODES = ("stock", "ours", "student")  # sampling: stock StableDiffusionPipeline defaults, ours, few-step student
# "trainer": whatever ldm's trainer uses on this device (ldm.models.use_training_attention); "sdpa":
# diffusers' stock processor with PyTorch's fused kernel, as the naive loop; "math": SDPA forced to its
# matmul-softmax backend; "classic": diffusers' pre-SDPA AttnProcessor (baddbmm + softmax).
ATTENTION = ("trainer", "sdpa", "math", "classic")
# walks: the few-step student (with its tiny decoder, when its folder ships one), the student decoding with the full
# VAE (the tiny decoder's gain, measured in the same run), its teacher, stock diffusers
REALTIME_MODES = ("student", "student-full", "teacher", "stock")
