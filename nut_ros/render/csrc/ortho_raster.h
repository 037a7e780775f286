// Orthographic Gaussian rasterizer (StreamSplat camera), forward and backward passes: shared constants and host API.
//
// Camera (fixed): p_cam = (x, -z, y); pixel u = ((x p_w + 1) W - 1) / 2, v = ((-z p_w + 1) H - 1) / 2 with
// p_w = 1 / (1 + 1e-7); constant EWA Jacobian diag(W/2, H/2); +0.3 px^2 low-pass; radius ceil(3 sqrt(lambda_max));
// 16x16 tiles; front-to-back compositing with alpha = min(0.99, o exp(power)), skip alpha < 1/255, stop at T < 1e-4.
// Outputs: color = sum(c a T) + T_final bg, depth = sum(d a T), alpha = sum(a T) (planar, batch first).
//
// The kernels live in ortho_raster_kernels.cuh (extern "C", no library dependencies) so that the same source is
// compiled by the PyTorch extension (through ortho_raster.cu) and by pycuda (TensorRT Python plugin).
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "ortho_raster_config.h"

// Per-Gaussian and per-tile scratch buffers, carved from one workspace (see ortho_raster_layout).
struct OrthoRasterLayout {
  size_t xy;          // float2 [B*N] pixel centre
  size_t depth;       // float  [B*N] camera depth
  size_t conic;       // float4 [B*N] conic (a, b, c) + opacity
  size_t rect;        // int4   [B*N] tile rectangle (min x, min y, max x, max y); empty when culled
  size_t tile_count;  // int    [B*T]
  size_t tile_start;  // int    [B*T]
  size_t tile_cursor; // int    [B*T]
  size_t total;       // int    [1]   number of (tile, Gaussian) pairs
  size_t bytes;       // workspace size (the sort keys are a separate buffer)
};

inline size_t ortho_align(size_t x) { return (x + ORTHO_ALIGN - 1) / ORTHO_ALIGN * ORTHO_ALIGN; }

inline int ortho_tiles(int height, int width) {
  return ((width + ORTHO_TILE - 1) / ORTHO_TILE) * ((height + ORTHO_TILE - 1) / ORTHO_TILE);
}

// Byte offsets of the scratch buffers for B images of N Gaussians.
inline OrthoRasterLayout ortho_raster_layout(int batch, int n, int height, int width) {
  const size_t g = (size_t)batch * n, t = (size_t)batch * ortho_tiles(height, width);
  OrthoRasterLayout l;
  size_t o = 0;
  l.xy = o; o += ortho_align(g * 8);
  l.depth = o; o += ortho_align(g * 4);
  l.conic = o; o += ortho_align(g * 16);
  l.rect = o; o += ortho_align(g * 16);
  l.tile_count = o; o += ortho_align(t * 4);
  l.tile_start = o; o += ortho_align(t * 4);
  l.tile_cursor = o; o += ortho_align(t * 4);
  l.total = o; o += ortho_align(4);
  l.bytes = o;
  return l;
}

// Stage 1: project (screen covariance + `lowpass` px^2 on its diagonal), count tile overlaps, prefix-sum the
// counts (writes `total` on the device).
// `workspace` must hold ortho_raster_layout(...).bytes bytes and is reused by stage 2.
cudaError_t ortho_raster_prepare(const float* means, const float* scales, const float* rotations,
                                 const float* opacities, int batch, int n, int height, int width, float lowpass,
                                 void* workspace, cudaStream_t stream);

// Stage 2: bin into `keys` (uint64 [capacity]: depth bits << 32 | Gaussian index, grouped by tile), depth-sort each
// tile and composite. Pairs beyond `capacity` are dropped (see docs/DEPLOYMENT.md); `total` says how many there were.
// `out_T` (float [B,H,W]) and `out_last` (int [B,H,W]) may be null; when given they receive what the backward needs.
cudaError_t ortho_raster_render(const float* colors, int batch, int n, int height, int width, float bg_r, float bg_g,
                                float bg_b, void* workspace, unsigned long long* keys, int capacity, float* out_color,
                                float* out_depth, float* out_alpha, float* out_T, int* out_last, cudaStream_t stream);

// Backward of stage 2 after a forward that saved `final_T`/`final_last` (same workspace and keys, unchanged).
// Accumulates into zeroed buffers: d_xy [B*N,2], d_conic [B*N,3] (a, b, c of the conic), d_opacity [B*N],
// d_color [B*N,3], d_depth [B*N]; gradients through the projection are left to the caller.
cudaError_t ortho_raster_backward(const float* colors, int batch, int n, int height, int width, float bg_r, float bg_g,
                                  float bg_b, const void* workspace, const unsigned long long* keys, int capacity,
                                  const float* final_T, const int* final_last, const float* grad_color,
                                  const float* grad_depth, const float* grad_alpha, float* d_xy, float* d_conic,
                                  float* d_opacity, float* d_color, float* d_depth, cudaStream_t stream);
