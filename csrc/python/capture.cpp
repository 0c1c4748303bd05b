// TensorCapture (see capture.h).

#include "capture.h"

#include "ggml-backend.h"

#include <pybind11/numpy.h>

#include <cstring>

namespace {

constexpr const char * k_prefix = "se_cap_";

}  // namespace

bool TensorCapture::callback(ggml_tensor * t, bool ask, void * user_data) {
    const bool wanted = std::strncmp(t->name, k_prefix, std::strlen(k_prefix)) == 0 &&
                        t->type == GGML_TYPE_F32 && ggml_is_contiguous(t);
    if (ask) {
        return wanted;  // the scheduler stops after these nodes so that they can be read
    }
    if (wanted) {
        Item item;
        for (int d = GGML_MAX_DIMS - 1; d >= 0; --d) {
            item.shape.push_back(t->ne[d]);
        }
        item.data.resize(ggml_nelements(t));
        ggml_backend_tensor_get(t, item.data.data(), 0, ggml_nbytes(t));
        auto * self = static_cast<TensorCapture *>(user_data);
        std::lock_guard<std::mutex> lock(self->mutex);
        self->items[t->name].push_back(std::move(item));
    }
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
