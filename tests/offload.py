"""Where the tests' models run: SELFEXTEND_TEST_N_GPU_LAYERS=-1 offloads every layer (the
GPU check, scripts/check_gpu.sh); unset or 0, the CPU."""

import os

N_GPU_LAYERS = int(os.environ.get("SELFEXTEND_TEST_N_GPU_LAYERS", "0"))
