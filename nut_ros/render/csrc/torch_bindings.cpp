// PyTorch binding of the orthographic rasterizer, forward and backward (built just in time by nut_ros/render/_cuda.py).
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <algorithm>
#include <vector>

#include "ortho_raster.h"

namespace {

void check_input(const at::Tensor& t, const char* name, int64_t batch, int64_t n, int64_t channels) {
  TORCH_CHECK(t.is_cuda() && t.scalar_type() == at::kFloat && t.is_contiguous(), name,
              " must be a contiguous float32 CUDA tensor");
  TORCH_CHECK(t.dim() == 3 && t.size(0) == batch && t.size(1) == n && t.size(2) == channels, name, " must be [",
              batch, ", ", n, ", ", channels, "], got ", t.sizes());
}

void check_cuda(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, what, ": ", cudaGetErrorString(err));
}

// (color [B,3,H,W], depth [B,1,H,W], alpha [B,1,H,W], pairs [1] int64 (tile-Gaussian pairs)); with
// `save_backward` also (workspace, keys, final T [B,H,W], last contributor [B,H,W] int32) for rasterize_backward.
// `capacity` > 0 (forward only): the sort buffer holds that many pairs and the count is not read on the host (no
// wait for the queued kernels); pairs beyond it are dropped, and the returned count (on the device) says whether any
// were. `capacity` <= 0: the buffer is sized from the count (one device -> host read, as in the reference).
std::vector<at::Tensor> rasterize_forward(const at::Tensor& means, const at::Tensor& scales,
                                          const at::Tensor& rotations, const at::Tensor& opacities,
                                          const at::Tensor& colors, int64_t height, int64_t width,
                                          std::vector<double> background, bool save_backward,
                                          double lowpass, int64_t capacity) {
  TORCH_CHECK(means.dim() == 3, "means must be [B, N, 3]");
  TORCH_CHECK(background.size() == 3, "background must have 3 values");
  const int64_t batch = means.size(0), n = means.size(1);
  check_input(means, "means", batch, n, 3);
  check_input(scales, "scales", batch, n, 3);
  check_input(rotations, "rotations", batch, n, 4);
  check_input(opacities, "opacities", batch, n, 1);
  check_input(colors, "colors", batch, n, 3);
  TORCH_CHECK(batch * n < (int64_t(1) << 31), "too many Gaussians");
  TORCH_CHECK(capacity < (int64_t(1) << 31), "capacity must fit in an int");
  TORCH_CHECK(!(save_backward && capacity > 0), "a forward for the backward pass sizes its buffer from the count");

  const c10::cuda::CUDAGuard guard(means.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const auto bytes = at::TensorOptions().dtype(at::kByte).device(means.device());
  const OrthoRasterLayout l = ortho_raster_layout(batch, n, height, width);
  at::Tensor workspace = at::empty({static_cast<int64_t>(l.bytes)}, bytes);
  check_cuda(ortho_raster_prepare(means.data_ptr<float>(), scales.data_ptr<float>(), rotations.data_ptr<float>(),
                                  opacities.data_ptr<float>(), batch, n, height, width, static_cast<float>(lowpass),
                                  workspace.data_ptr(), stream),
             "ortho_raster_prepare");
  const at::Tensor count = workspace.narrow(0, l.total, sizeof(int)).view(at::kInt);
  const int total = capacity > 0 ? static_cast<int>(capacity) : count.item<int>();
  at::Tensor keys = at::empty({std::max(total, 1)}, bytes.dtype(at::kLong));

  const auto f32 = means.options();
  at::Tensor color = at::empty({batch, 3, height, width}, f32);
  at::Tensor depth = at::empty({batch, 1, height, width}, f32);
  at::Tensor alpha = at::empty({batch, 1, height, width}, f32);
  at::Tensor final_T, final_last;
  if (save_backward) {
    final_T = at::empty({batch, height, width}, f32);
    final_last = at::empty({batch, height, width}, f32.dtype(at::kInt));
  }
  check_cuda(ortho_raster_render(colors.data_ptr<float>(), batch, n, height, width, background[0], background[1],
                                 background[2], workspace.data_ptr(),
                                 reinterpret_cast<unsigned long long*>(keys.data_ptr<int64_t>()), total,
                                 color.data_ptr<float>(), depth.data_ptr<float>(), alpha.data_ptr<float>(),
                                 save_backward ? final_T.data_ptr<float>() : nullptr,
                                 save_backward ? final_last.data_ptr<int>() : nullptr, stream),
             "ortho_raster_render");
  if (!save_backward) return {color, depth, alpha, count.to(at::kLong)};
  return {color, depth, alpha, count.to(at::kLong), workspace, keys, final_T, final_last};
}

// Gradients of the screen-space parameters: (d_xy [B,N,2], d_conic [B,N,3], d_opacity [B,N,1], d_color [B,N,3],
// d_depth [B,N]) from the state a `save_backward` forward returned and the output gradients.
std::vector<at::Tensor> rasterize_backward(const at::Tensor& colors, const at::Tensor& workspace,
                                           const at::Tensor& keys, int64_t pairs, const at::Tensor& final_T,
                                           const at::Tensor& final_last, const at::Tensor& grad_color,
                                           const at::Tensor& grad_depth, const at::Tensor& grad_alpha,
                                           std::vector<double> background) {
  const int64_t batch = colors.size(0), n = colors.size(1), height = final_T.size(1), width = final_T.size(2);
  check_input(colors, "colors", batch, n, 3);
  for (const at::Tensor* g : {&grad_color, &grad_depth, &grad_alpha})
    TORCH_CHECK(g->is_cuda() && g->scalar_type() == at::kFloat && g->is_contiguous() && g->size(0) == batch &&
                    g->size(2) == height && g->size(3) == width,
                "output gradients must be contiguous float32 CUDA tensors [B, C, H, W]");
  const c10::cuda::CUDAGuard guard(colors.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const auto f32 = colors.options();
  at::Tensor d_xy = at::zeros({batch, n, 2}, f32), d_conic = at::zeros({batch, n, 3}, f32);
  at::Tensor d_opacity = at::zeros({batch, n, 1}, f32), d_color = at::zeros({batch, n, 3}, f32);
  at::Tensor d_depth = at::zeros({batch, n}, f32);
  check_cuda(ortho_raster_backward(colors.data_ptr<float>(), batch, n, height, width, background[0], background[1],
                                   background[2], workspace.data_ptr(),
                                   reinterpret_cast<const unsigned long long*>(keys.data_ptr<int64_t>()),
                                   static_cast<int>(pairs), final_T.data_ptr<float>(), final_last.data_ptr<int>(),
                                   grad_color.data_ptr<float>(), grad_depth.data_ptr<float>(),
                                   grad_alpha.data_ptr<float>(), d_xy.data_ptr<float>(), d_conic.data_ptr<float>(),
                                   d_opacity.data_ptr<float>(), d_color.data_ptr<float>(), d_depth.data_ptr<float>(),
                                   stream),
             "ortho_raster_backward");
  return {d_xy, d_conic, d_opacity, d_color, d_depth};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("rasterize_forward", &rasterize_forward, "Orthographic Gaussian rasterizer, forward (CUDA)",
        pybind11::arg("means"), pybind11::arg("scales"), pybind11::arg("rotations"), pybind11::arg("opacities"),
        pybind11::arg("colors"), pybind11::arg("height"), pybind11::arg("width"), pybind11::arg("background"),
        pybind11::arg("save_backward") = false, pybind11::arg("lowpass") = 0.3,
        pybind11::arg("capacity") = 0);
  m.def("rasterize_backward", &rasterize_backward, "Orthographic Gaussian rasterizer, backward (CUDA)");
}
