// llama.cpp's RPC backend (ggml-rpc): other machines' devices as this process's, and the
// server that offers a machine's devices. Built from the same patched ggml on both ends,
// so Self-Extend's graphs compute the same remotely. Patch 0008 makes a lost server a C++
// exception (here: LlamaCppError) instead of an abort.

#include "core.h"

#include "ggml-backend.h"
#include "ggml-rpc.h"

#include <pybind11/stl.h>

#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

std::mutex                                       g_mutex;
std::map<std::string, std::vector<std::string>>  g_servers;   // endpoint -> its devices' names

// Register the devices of an RPC server (once per endpoint); their names.
std::vector<std::string> rpc_add_server(const std::string & endpoint) {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = g_servers.find(endpoint);
    if (it != g_servers.end()) {
        return it->second;
    }
    std::vector<std::string> names;
    {
        py::gil_scoped_release release;
        llama_errors_clear();
        ggml_backend_reg_t reg = call_llama("connecting to the RPC server", "", [&] {
            return ggml_backend_rpc_add_server(endpoint.c_str());
        });
        llama_errors_take();
        for (size_t i = 0; i < ggml_backend_reg_dev_count(reg); ++i) {
            ggml_backend_dev_t dev = ggml_backend_reg_dev_get(reg, i);
            ggml_backend_device_register(dev);
            names.emplace_back(ggml_backend_dev_name(dev));
        }
    }
    if (names.empty()) {
        throw llama_cpp_error("the RPC server " + endpoint + " offers no device");
    }
    g_servers[endpoint] = names;
    return names;
}

std::vector<std::string> rpc_device_names() {
    std::lock_guard<std::mutex> lock(g_mutex);
    std::vector<std::string> out;
    for (const auto & [endpoint, names] : g_servers) {
        out.insert(out.end(), names.begin(), names.end());
    }
    return out;
}

// Serve this machine's devices (default: the CPU) at endpoint until the process ends.
void rpc_start_server(const std::string & endpoint, const std::string & cache_dir, size_t n_threads,
                      const std::vector<std::string> & device_names) {
    std::vector<ggml_backend_dev_t> devices;
    for (const auto & name : device_names) {
        ggml_backend_dev_t dev = ggml_backend_dev_by_name(name.c_str());
        if (dev == nullptr) {
            throw std::invalid_argument("no device '" + name + "' in this build (see `selfextend-gguf info`)");
        }
        devices.push_back(dev);
    }
    if (devices.empty()) {
        devices.push_back(ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU));
    }
    py::gil_scoped_release release;
    ggml_backend_rpc_start_server(endpoint.c_str(), cache_dir.empty() ? nullptr : cache_dir.c_str(), n_threads,
                                  devices.size(), devices.data());
}

// memory: ask each device for its free and total memory (for an RPC device, a round trip
// to its server; one that cannot be reached is listed with "reachable": False)
py::list devices(bool memory) {
    py::list out;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        const auto type = ggml_backend_dev_type(dev);
        py::dict d;
        d["name"] = ggml_backend_dev_name(dev);
        d["description"] = ggml_backend_dev_description(dev);
        d["type"] = type == GGML_BACKEND_DEVICE_TYPE_CPU ? "cpu" : type == GGML_BACKEND_DEVICE_TYPE_GPU ? "gpu"
                  : type == GGML_BACKEND_DEVICE_TYPE_IGPU ? "igpu" : "accel";
        if (memory) {
            size_t free = 0, total = 0;
            bool reachable = true;
            {
                py::gil_scoped_release release;
                try {
                    ggml_backend_dev_memory(dev, &free, &total);
                } catch (const std::exception &) {
                    reachable = false;
                }
            }
            d["memory_free"] = free;
            d["memory_total"] = total;
            d["reachable"] = reachable;
        }
        out.append(d);
    }
    return out;
}

}  // namespace

void bind_rpc(py::module_ & m) {
    m.def("rpc_add_server", &rpc_add_server, py::arg("endpoint"),
          "Connect to an RPC server (host:port) and register its devices; their names.");
    m.def("rpc_device_names", &rpc_device_names, "Names of the devices of the RPC servers added so far.");
    m.def("rpc_start_server", &rpc_start_server, py::arg("endpoint"), py::arg("cache_dir") = "",
          py::arg("n_threads") = 1, py::arg("devices") = std::vector<std::string>(),
          "Serve this machine's devices (default: the CPU) over RPC at endpoint; blocks.");
    m.def("devices", &devices, py::arg("memory") = true,
          "Every device this process knows (local backends and RPC servers added).");
}
