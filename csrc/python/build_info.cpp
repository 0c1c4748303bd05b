// _core.build_info(): what this build of the extension contains, for bug reports
// (selfextend_gguf.system_info() and `selfextend-gguf info` present it).

#include "core.h"

#include "ggml-backend.h"

#include <pybind11/stl.h>

#include <exception>
#include <string>
#include <vector>

#ifndef SELFEXTEND_LLAMA_PIN
#define SELFEXTEND_LLAMA_PIN "unknown"
#endif
#ifndef SELFEXTEND_BUILD_FLAGS
#define SELFEXTEND_BUILD_FLAGS ""
#endif

namespace {

// The compiled features of one backend registry, e.g. CPU: AVX2 = 1, AVX512 = 1.
py::dict reg_features(ggml_backend_reg_t reg) {
    py::dict features;
    auto get_features = (ggml_backend_get_features_t)
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features");
    if (get_features) {
        for (ggml_backend_feature * f = get_features(reg); f && f->name; ++f) {
            features[py::str(f->name)] = std::string(f->value);
        }
    }
    return features;
}

// Extra weight buffer types a device offers (the CPU's "CPU_REPACK", and "AMX" when
// ggml's AMX kernels were compiled in).
std::vector<std::string> extra_buffer_types(ggml_backend_dev_t dev) {
    std::vector<std::string> names;
    auto get_extra = (ggml_backend_dev_get_extra_bufts_t)
        ggml_backend_reg_get_proc_address(ggml_backend_dev_backend_reg(dev), "ggml_backend_dev_get_extra_bufts");
    if (get_extra) {
        for (ggml_backend_buffer_type_t * b = get_extra(dev); b && *b; ++b) {
            names.emplace_back(ggml_backend_buft_name(*b));
        }
    }
    return names;
}

py::dict build_info() {
    py::dict info;
    info["llama_cpp"]   = SELFEXTEND_LLAMA_PIN;
    info["build_flags"] = SELFEXTEND_BUILD_FLAGS;
    info["system_info"] = std::string(llama_print_system_info());

    py::list backends;
    for (size_t i = 0; i < ggml_backend_reg_count(); ++i) {
        ggml_backend_reg_t reg = ggml_backend_reg_get(i);
        py::dict b;
        b["name"]     = std::string(ggml_backend_reg_name(reg));
        b["features"] = reg_features(reg);
        backends.append(b);
    }
    info["backends"] = backends;

    py::list devices;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        py::dict d;
        d["name"]        = std::string(ggml_backend_dev_name(dev));
        d["description"] = std::string(ggml_backend_dev_description(dev));
        d["extra_buffer_types"] = extra_buffer_types(dev);
        switch (ggml_backend_dev_type(dev)) {
            case GGML_BACKEND_DEVICE_TYPE_CPU:   d["type"] = "cpu";   break;
            case GGML_BACKEND_DEVICE_TYPE_GPU:   d["type"] = "gpu";   break;
            case GGML_BACKEND_DEVICE_TYPE_IGPU:  d["type"] = "igpu";  break;
            default:                             d["type"] = "accel"; break;
        }
        // asked of the device itself: an RPC server that has gone away answers with an
        // error, which leaves the memory unknown (None) rather than failing the whole report
        try {
            size_t free = 0, total = 0;
            ggml_backend_dev_memory(dev, &free, &total);
            d["memory_total"] = total;
            d["memory_free"]  = free;
        } catch (const std::exception & e) {
            d["memory_total"] = py::none();
            d["memory_free"]  = py::none();
            d["error"]        = std::string(e.what());
        }
        devices.append(d);
    }
    info["devices"] = devices;
    return info;
}

}  // namespace

void bind_build_info(py::module_ & m) {
    m.def("build_info", &build_info,
          "The llama.cpp pin, build flags, llama.cpp's system info, and each ggml backend's compiled "
          "features and devices.");
}
