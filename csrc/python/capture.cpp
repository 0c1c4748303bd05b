// TensorCapture (see capture.h).

#include "capture.h"

#include "ggml-backend.h"

#include <pybind11/numpy.h>

#include <cstring>

namespace {

constexpr const char * k_prefix = "se_cap_";
constexpr const char * k_last   = "result_output";   // llama.cpp's logits: a graph's last node

}  // namespace

bool TensorCapture::callback(ggml_tensor * t, bool ask, void * user_data) {
    auto * self = static_cast<TensorCapture *>(user_data);
    const bool last = std::strcmp(t->name, k_last) == 0;
    if (ask) {
        const bool wanted = std::strncmp(t->name, k_prefix, std::strlen(k_prefix)) == 0 &&
                            t->type == GGML_TYPE_F32 && ggml_is_contiguous(t);
        if (wanted) {
            std::lock_guard<std::mutex> lock(self->mutex);
            self->pending.push_back(t);
        }
        return last;  // the scheduler computes the whole graph, then calls again for it
    }
    std::lock_guard<std::mutex> lock(self->mutex);
    for (ggml_tensor * p : self->pending) {
        Item item;
        for (int d = GGML_MAX_DIMS - 1; d >= 0; --d) {
            item.shape.push_back(p->ne[d]);
        }
        item.data.resize(ggml_nelements(p));
        ggml_backend_tensor_get(p, item.data.data(), 0, ggml_nbytes(p));
        self->items[p->name].push_back(std::move(item));
    }
    self->pending.clear();
    return true;  // go on computing
}

py::dict TensorCapture::take() {
    std::map<std::string, std::vector<Item>> taken;
    {
        std::lock_guard<std::mutex> lock(mutex);
        taken.swap(items);
    }
    py::dict out;
    for (auto & [name, list] : taken) {
        py::list arrays;
        for (Item & item : list) {
            py::array_t<float> a(item.shape);
            std::memcpy(a.mutable_data(), item.data.data(), item.data.size() * sizeof(float));
            arrays.append(a);
        }
        out[py::str(name)] = arrays;
    }
    return out;
}
