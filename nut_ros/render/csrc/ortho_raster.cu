// Host launchers of the orthographic rasterizer: used by the PyTorch extension and by a C++ TensorRT plugin.
#include "ortho_raster.h"
#include "ortho_raster_kernels.cuh"

namespace {
inline int blocks_for(int items, int threads) { return (items + threads - 1) / threads; }
}  // namespace

cudaError_t ortho_raster_prepare(const float* means, const float* scales, const float* rotations,
                                 const float* opacities, int batch, int n, int height, int width, float lowpass,
                                 void* workspace, cudaStream_t stream) {
  const OrthoRasterLayout l = ortho_raster_layout(batch, n, height, width);
  char* ws = static_cast<char*>(workspace);
  const int tiles = batch * ortho_tiles(height, width);
  cudaError_t err = cudaMemsetAsync(ws + l.tile_count, 0, sizeof(int) * tiles, stream);
  if (err != cudaSuccess) return err;
  if (batch * n > 0)
    ortho_preprocess<<<blocks_for(batch * n, ORTHO_PRE_THREADS), ORTHO_PRE_THREADS, 0, stream>>>(
        batch, n, height, width, lowpass, means, scales, rotations, opacities, reinterpret_cast<float2*>(ws + l.xy),
        reinterpret_cast<float*>(ws + l.depth), reinterpret_cast<float4*>(ws + l.conic),
        reinterpret_cast<int4*>(ws + l.rect), reinterpret_cast<int*>(ws + l.tile_count));
  ortho_scan_tiles<<<1, ORTHO_SCAN_THREADS, 0, stream>>>(
      tiles, reinterpret_cast<int*>(ws + l.tile_count), reinterpret_cast<int*>(ws + l.tile_start),
      reinterpret_cast<int*>(ws + l.tile_cursor), reinterpret_cast<int*>(ws + l.total));
  return cudaGetLastError();
}

cudaError_t ortho_raster_render(const float* colors, int batch, int n, int height, int width, float bg_r, float bg_g,
                                float bg_b, void* workspace, unsigned long long* keys, int capacity, float* out_color,
                                float* out_depth, float* out_alpha, float* out_T, int* out_last,
                                cudaStream_t stream) {
  const OrthoRasterLayout l = ortho_raster_layout(batch, n, height, width);
  char* ws = static_cast<char*>(workspace);
  const int gx = (width + ORTHO_TILE - 1) / ORTHO_TILE, gy = (height + ORTHO_TILE - 1) / ORTHO_TILE;
  const int* start = reinterpret_cast<const int*>(ws + l.tile_start);
  const int* count = reinterpret_cast<const int*>(ws + l.tile_count);
  if (batch * n > 0 && capacity > 0) {
    ortho_scatter<<<blocks_for(batch * n, ORTHO_PRE_THREADS), ORTHO_PRE_THREADS, 0, stream>>>(
        batch, n, height, width, reinterpret_cast<const float*>(ws + l.depth),
        reinterpret_cast<const int4*>(ws + l.rect), reinterpret_cast<int*>(ws + l.tile_cursor), keys, capacity);
    ortho_sort_tiles<<<batch * gx * gy, ORTHO_SORT_THREADS, 0, stream>>>(start, count, keys, capacity);
  }
  if (batch > 0)
    ortho_render<<<dim3(gx, gy, batch), dim3(ORTHO_TILE, ORTHO_TILE), 0, stream>>>(
        n, height, width, start, count, keys, capacity, reinterpret_cast<const float2*>(ws + l.xy),
        reinterpret_cast<const float4*>(ws + l.conic), colors, bg_r, bg_g, bg_b, out_color, out_depth, out_alpha, out_T,
        out_last);
  return cudaGetLastError();
}

cudaError_t ortho_raster_backward(const float* colors, int batch, int n, int height, int width, float bg_r, float bg_g,
                                  float bg_b, const void* workspace, const unsigned long long* keys, int capacity,
                                  const float* final_T, const int* final_last, const float* grad_color,
                                  const float* grad_depth, const float* grad_alpha, float* d_xy, float* d_conic,
                                  float* d_opacity, float* d_color, float* d_depth, cudaStream_t stream) {
  const OrthoRasterLayout l = ortho_raster_layout(batch, n, height, width);
  const char* ws = static_cast<const char*>(workspace);
  const int gx = (width + ORTHO_TILE - 1) / ORTHO_TILE, gy = (height + ORTHO_TILE - 1) / ORTHO_TILE;
  if (batch > 0 && capacity > 0)
    ortho_render_backward<<<dim3(gx, gy, batch), dim3(ORTHO_TILE, ORTHO_TILE), 0, stream>>>(
        n, height, width, reinterpret_cast<const int*>(ws + l.tile_start),
        reinterpret_cast<const int*>(ws + l.tile_count), keys, capacity, reinterpret_cast<const float2*>(ws + l.xy),
        reinterpret_cast<const float4*>(ws + l.conic), colors, bg_r, bg_g, bg_b, final_T, final_last, grad_color,
        grad_depth, grad_alpha, d_xy, d_conic, d_opacity, d_color, d_depth);
  return cudaGetLastError();
}
