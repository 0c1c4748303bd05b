# Sourced by device_suite.sh and check_vulkan.sh: which device a GPU build's tests use.

# device_names PY: the devices other than the CPU that the build of Python PY finds
device_names() {
    "$1" -c 'from selfextend_gguf import system_info
print(" ".join(d["name"] for d in system_info()["devices"] if d["type"] != "cpu"))'
}

# use_lavapipe_without_gpu PY: ggml-vulkan takes GPUs only; where it finds none, name its
# first device (Mesa's lavapipe on a machine without a GPU), unless a device is named already
use_lavapipe_without_gpu() {
    if [ -z "${GGML_VK_VISIBLE_DEVICES:-}" ] && [ -z "$(device_names "$1")" ]; then
        export GGML_VK_VISIBLE_DEVICES=0
    fi
}
