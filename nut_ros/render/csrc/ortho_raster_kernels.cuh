// Orthographic Gaussian rasterizer kernels (forward). Self-contained (no CUB, no host code) and extern "C", so the
// same source is compiled into the PyTorch extension and by pycuda for the TensorRT Python plugin.
//
// Pipeline, one launch each (B images handled together; tile ids run over all images: b * T + ty * gx + tx):
//   ortho_preprocess  project every Gaussian, conic + tile rectangle, count Gaussians per tile (atomics)
//   ortho_scan_tiles  exclusive prefix sum of the per-tile counts -> tile start, cursor, total
//   ortho_scatter     write one 64-bit key (depth bits << 32 | index) per (tile, Gaussian) into its tile's range
//   ortho_sort_tiles  depth-sort each tile's keys (bitonic; in shared memory when they fit). The index in the low
//                     bits breaks depth ties by Gaussian order, as the reference's stable radix sort does.
//   ortho_render      one 16x16 block per tile, front-to-back alpha compositing (optionally saving, per pixel, the
//                     final transmittance and the end of its contributor list for the backward pass)
//   ortho_render_backward  one 16x16 block per tile, back-to-front: gradients of the per-Gaussian screen parameters
// Floating-point steps follow the reference rasterizer (diff-gaussian-rasterization-orth) operation by operation.
#pragma once

#include "ortho_raster_config.h"

__device__ __forceinline__ float ortho_ndc2pix(float v, int size) {
  // The reference promotes to double here ((v + 1.0) * S - 1.0) * 0.5.
  return (float)((((double)v + 1.0) * size - 1.0) * 0.5);
}

extern "C" __global__ void ortho_preprocess(int batch, int n, int height, int width, float lowpass,
                                            const float* __restrict__ means,
                                            const float* __restrict__ scales, const float* __restrict__ rotations,
                                            const float* __restrict__ opacities, float2* __restrict__ xy,
                                            float* __restrict__ depth, float4* __restrict__ conic,
                                            int4* __restrict__ rect, int* __restrict__ tile_count) {
  const int g = blockIdx.x * blockDim.x + threadIdx.x;
  if (g >= batch * n) return;
  rect[g] = make_int4(0, 0, 0, 0);
  const float mx = means[3 * g], my = means[3 * g + 1], mz = means[3 * g + 2];
  // camera = (x, -z, y): depth is world y; z_cam <= 0 is culled, and so is a Gaussian with a non-finite position or
  // opacity (as in the torch and CPU paths: NaN fails every comparison, so each test is written to fail on it)
  if (!(my > 0.0f) || !isfinite(my) || !isfinite(mx) || !isfinite(mz) || !(opacities[g] > 0.0f)) return;

  // 3D covariance R S^2 R^T from an unnormalised quaternion (w, x, y, z); only the x/z block is seen by the camera
  const float s0 = scales[3 * g], s1 = scales[3 * g + 1], s2 = scales[3 * g + 2];
  const float r = rotations[4 * g], x = rotations[4 * g + 1], y = rotations[4 * g + 2], z = rotations[4 * g + 3];
  const float m00 = s0 * (1.f - 2.f * (y * y + z * z)), m10 = s1 * (2.f * (x * y - r * z)),
              m20 = s2 * (2.f * (x * z + r * y));
  const float m02 = s0 * (2.f * (x * z - r * y)), m12 = s1 * (2.f * (y * z + r * x)),
              m22 = s2 * (1.f - 2.f * (x * x + y * y));
  const float sxx = m00 * m00 + m10 * m10 + m20 * m20;
  const float sxz = m00 * m02 + m10 * m12 + m20 * m22;
  const float szz = m02 * m02 + m12 * m12 + m22 * m22;

  // EWA with the constant Jacobian diag(fx, fy), tanfov = 1, plus the low-pass (px^2; the reference's is 0.3)
  const float fx = width / 2.0f, fy = height / 2.0f;
  const float a = (fx * sxx) * fx + lowpass;
  const float b = (fx * sxz) * (-fy);
  const float c = (-fy * szz) * (-fy) + lowpass;
  const float det = a * c - b * b;
  if (!(det > 0.0f) || !isfinite(det)) return;  // not positive definite (float32 rounding of a thin one) or NaN
  const float det_inv = 1.f / det;
  const float mid = 0.5f * (a + c);
  const float disc = sqrtf(fmaxf(0.1f, mid * mid - det));
  const float radius = ceilf(3.f * sqrtf(fmaxf(mid + disc, mid - disc)));

  const float p_w = 1.0f / (1.0f + 0.0000001f);
  const float u = ortho_ndc2pix(mx * p_w, width), v = ortho_ndc2pix(-mz * p_w, height);
  const int gx = (width + ORTHO_TILE - 1) / ORTHO_TILE, gy = (height + ORTHO_TILE - 1) / ORTHO_TILE;
  const int ir = (int)radius;
  const int x0 = min(gx, max(0, (int)((u - ir) / ORTHO_TILE)));
  const int y0 = min(gy, max(0, (int)((v - ir) / ORTHO_TILE)));
  const int x1 = min(gx, max(0, (int)((u + ir + ORTHO_TILE - 1) / ORTHO_TILE)));
  const int y1 = min(gy, max(0, (int)((v + ir + ORTHO_TILE - 1) / ORTHO_TILE)));
  if ((x1 - x0) * (y1 - y0) == 0) return;

  xy[g] = make_float2(u, v);
  depth[g] = my;
  conic[g] = make_float4(c * det_inv, -b * det_inv, a * det_inv, opacities[g]);
  rect[g] = make_int4(x0, y0, x1, y1);
  int* counts = tile_count + (g / n) * gx * gy;
  for (int ty = y0; ty < y1; ++ty)
    for (int tx = x0; tx < x1; ++tx) atomicAdd(counts + ty * gx + tx, 1);
}

extern "C" __global__ void ortho_scan_tiles(int num_tiles, const int* __restrict__ tile_count,
                                            int* __restrict__ tile_start, int* __restrict__ tile_cursor,
                                            int* __restrict__ total) {
  __shared__ int buf[ORTHO_SCAN_THREADS];
  __shared__ int carry;
  const int t = threadIdx.x;
  if (t == 0) carry = 0;
  __syncthreads();
  for (int base = 0; base < num_tiles; base += ORTHO_SCAN_THREADS) {
    const int i = base + t;
    const int value = i < num_tiles ? tile_count[i] : 0;
    buf[t] = value;
    __syncthreads();
    for (int off = 1; off < ORTHO_SCAN_THREADS; off <<= 1) {
      const int add = t >= off ? buf[t - off] : 0;
      __syncthreads();
      buf[t] += add;
      __syncthreads();
    }
    if (i < num_tiles) tile_start[i] = tile_cursor[i] = carry + buf[t] - value;
    __syncthreads();
    if (t == ORTHO_SCAN_THREADS - 1) carry += buf[t];
    __syncthreads();
  }
  if (t == 0) *total = carry;
}

extern "C" __global__ void ortho_scatter(int batch, int n, int height, int width, const float* __restrict__ depth,
                                         const int4* __restrict__ rect, int* __restrict__ tile_cursor,
                                         unsigned long long* __restrict__ keys, int capacity) {
  const int g = blockIdx.x * blockDim.x + threadIdx.x;
  if (g >= batch * n) return;
  const int4 r = rect[g];
  if (r.z <= r.x || r.w <= r.y) return;
  const int gx = (width + ORTHO_TILE - 1) / ORTHO_TILE, gy = (height + ORTHO_TILE - 1) / ORTHO_TILE;
  const int b = g / n;
  // depth > 0, so its bit pattern orders like the float
  const unsigned long long key =
      ((unsigned long long)__float_as_uint(depth[g]) << 32) | (unsigned long long)(unsigned)(g - b * n);
  int* cursor = tile_cursor + b * gx * gy;
  for (int ty = r.y; ty < r.w; ++ty)
    for (int tx = r.x; tx < r.z; ++tx) {
      const int pos = atomicAdd(cursor + ty * gx + tx, 1);
      if (pos < capacity) keys[pos] = key;
    }
}

// Ascending bitonic sort of k[0..len) by the whole block, for any len: the network of the next power of two with
// every comparator oriented low -> high, so the missing (+inf) elements at the end never move and are skipped.
__device__ void ortho_bitonic_sort(unsigned long long* k, int len) {
  int p = 1;
  while (p < len) p <<= 1;
  for (int size = 2; size <= p; size <<= 1) {
    const int half = size >> 1;
    for (int t = threadIdx.x; t < p / 2; t += blockDim.x) {
      const int blk = t / half, off = t - blk * half;
      const int lo = blk * size + off, hi = blk * size + size - 1 - off;
      if (hi < len && k[lo] > k[hi]) {
        const unsigned long long tmp = k[lo];
        k[lo] = k[hi];
        k[hi] = tmp;
      }
    }
    __syncthreads();
    for (int j = half >> 1; j > 0; j >>= 1) {
      for (int t = threadIdx.x; t < p / 2; t += blockDim.x) {
        const int lo = (t / j) * 2 * j + (t % j), hi = lo + j;
        if (hi < len && k[lo] > k[hi]) {
          const unsigned long long tmp = k[lo];
          k[lo] = k[hi];
          k[hi] = tmp;
        }
      }
      __syncthreads();
    }
  }
}

extern "C" __global__ void ortho_sort_tiles(const int* __restrict__ tile_start, const int* __restrict__ tile_count,
                                            unsigned long long* keys, int capacity) {
  __shared__ unsigned long long buf[ORTHO_SORT_SMEM_KEYS];
  const int start = tile_start[blockIdx.x];
  const int len = min(start + tile_count[blockIdx.x], capacity) - start;
  if (len <= 1) return;
  if (len > ORTHO_SORT_SMEM_KEYS) {
    ortho_bitonic_sort(keys + start, len);
    return;
  }
  for (int i = threadIdx.x; i < len; i += blockDim.x) buf[i] = keys[start + i];
  __syncthreads();
  ortho_bitonic_sort(buf, len);
  for (int i = threadIdx.x; i < len; i += blockDim.x) keys[start + i] = buf[i];
}

// The pixel a thread of a render / backward block works on: image b (blockIdx.z), the tile's index over all images,
// the thread's rank in the block, pixel (px, py) and whether it lies inside the image.
struct OrthoPixel {
  int b, tile, rank, px, py;
  bool inside;
};

__device__ __forceinline__ OrthoPixel ortho_pixel(int height, int width) {
  OrthoPixel q;
  q.b = blockIdx.z;
  q.tile = (q.b * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  q.rank = threadIdx.y * ORTHO_TILE + threadIdx.x;
  q.px = blockIdx.x * ORTHO_TILE + threadIdx.x;
  q.py = blockIdx.y * ORTHO_TILE + threadIdx.y;
  q.inside = q.px < width && q.py < height;
  return q;
}

// Exponent of a 2-D Gaussian with conic (a, b, c) = co.xyz at pixel offset (dx, dy) from its centre (<= 0 inside).
__device__ __forceinline__ float ortho_power(float4 co, float dx, float dy) {
  return -0.5f * (co.x * dx * dx + co.z * dy * dy) - co.y * dx * dy;
}

// Stages tile-list entry `key` of image b into shared-memory slot `rank` (global index, screen position, conic);
// returns the global index. The entry's depth is __uint_as_float(key >> 32).
__device__ __forceinline__ int ortho_stage(unsigned long long key, int b, int n, int rank,
                                           const float2* __restrict__ xy, const float4* __restrict__ conic,
                                           int* s_id, float2* s_xy, float4* s_conic) {
  const int gi = b * n + (int)(unsigned)(key & 0xffffffffull);
  s_id[rank] = gi;
  s_xy[rank] = xy[gi];
  s_conic[rank] = conic[gi];
  return gi;
}

extern "C" __global__ void __launch_bounds__(ORTHO_BLOCK)
    ortho_render(int n, int height, int width, const int* __restrict__ tile_start,
                 const int* __restrict__ tile_count, const unsigned long long* __restrict__ keys, int capacity,
                 const float2* __restrict__ xy, const float4* __restrict__ conic, const float* __restrict__ colors,
                 float bg_r, float bg_g, float bg_b, float* __restrict__ out_color, float* __restrict__ out_depth,
                 float* __restrict__ out_alpha, float* __restrict__ out_T, int* __restrict__ out_last) {
  __shared__ int s_id[ORTHO_BLOCK];
  __shared__ float2 s_xy[ORTHO_BLOCK];
  __shared__ float4 s_conic[ORTHO_BLOCK];
  __shared__ float s_depth[ORTHO_BLOCK];

  const OrthoPixel q = ortho_pixel(height, width);
  const int b = q.b, rank = q.rank, px = q.px, py = q.py;
  const bool inside = q.inside;
  const float pxf = (float)px, pyf = (float)py;
  const int start = tile_start[q.tile];
  const int len = max(0, min(start + tile_count[q.tile], capacity) - start);

  bool done = !inside;
  int last = 0;  // one past the tile-list position of the last contributor
  float T = 1.0f, cr = 0.0f, cg = 0.0f, cb = 0.0f, d = 0.0f, acc = 0.0f;
  for (int base = 0; base < len; base += ORTHO_BLOCK) {
    if (__syncthreads_count(done) == ORTHO_BLOCK) break;
    if (base + rank < len) {
      const unsigned long long key = keys[start + base + rank];
      ortho_stage(key, b, n, rank, xy, conic, s_id, s_xy, s_conic);
      s_depth[rank] = __uint_as_float((unsigned)(key >> 32));
    }
    __syncthreads();
    const int count = min(ORTHO_BLOCK, len - base);
    for (int j = 0; !done && j < count; ++j) {
      const float2 p = s_xy[j];
      const float4 co = s_conic[j];
      const float dx = p.x - pxf, dy = p.y - pyf;
      const float power = ortho_power(co, dx, dy);
      if (power > 0.0f) continue;
      const float alpha = fminf(0.99f, co.w * expf(power));
      if (alpha < 1.0f / 255.0f) continue;
      const float test_T = T * (1 - alpha);
      if (test_T < 0.0001f) {
        done = true;
        continue;
      }
      const float w = alpha * T;
      const float* col = colors + 3 * s_id[j];
      cr += col[0] * w;
      cg += col[1] * w;
      cb += col[2] * w;
      d += s_depth[j] * w;
      acc += w;
      T = test_T;
      last = base + j + 1;
    }
  }
  if (!inside) return;
  const int hw = height * width, pix = py * width + px;
  if (out_T != nullptr) {
    out_T[b * hw + pix] = T;
    out_last[b * hw + pix] = last;
  }
  out_color[(3 * b + 0) * hw + pix] = cr + T * bg_r;
  out_color[(3 * b + 1) * hw + pix] = cg + T * bg_g;
  out_color[(3 * b + 2) * hw + pix] = cb + T * bg_b;
  out_depth[b * hw + pix] = d;
  out_alpha[b * hw + pix] = acc;
}

// Backward of ortho_render. Per pixel, walks its contributors back to front, recovering T_{i-1} = T_i / (1 - a_i) from
// the saved final T, and accumulates (atomics) the gradients of every Gaussian's pixel centre (u, v), conic (a, b, c),
// opacity, colour and depth. Features are (r, g, b, depth, 1): the alpha image is composited like a channel of ones
// over a zero background. a = min(0.99, o exp(power)); where the clamp is active a has no gradient (as in torch).
extern "C" __global__ void __launch_bounds__(ORTHO_BLOCK)
    ortho_render_backward(int n, int height, int width, const int* __restrict__ tile_start,
                          const int* __restrict__ tile_count, const unsigned long long* __restrict__ keys,
                          int capacity, const float2* __restrict__ xy, const float4* __restrict__ conic,
                          const float* __restrict__ colors, float bg_r, float bg_g, float bg_b,
                          const float* __restrict__ final_T, const int* __restrict__ final_last,
                          const float* __restrict__ grad_color, const float* __restrict__ grad_depth,
                          const float* __restrict__ grad_alpha, float* __restrict__ d_xy, float* __restrict__ d_conic,
                          float* __restrict__ d_opacity, float* __restrict__ d_color, float* __restrict__ d_depth) {
  __shared__ int s_id[ORTHO_BLOCK];
  __shared__ float2 s_xy[ORTHO_BLOCK];
  __shared__ float4 s_conic[ORTHO_BLOCK];
  __shared__ float s_feat[ORTHO_BLOCK][4];
  __shared__ int s_max_last;

  const OrthoPixel q = ortho_pixel(height, width);
  const int b = q.b, rank = q.rank, px = q.px, py = q.py;
  const bool inside = q.inside;
  const float pxf = (float)px, pyf = (float)py;
  const int start = tile_start[q.tile];
  const int hw = height * width, pix = py * width + px;

  const float T_final = inside ? final_T[b * hw + pix] : 0.0f;
  const int last = inside ? final_last[b * hw + pix] : 0;
  float g[5] = {0.f, 0.f, 0.f, 0.f, 0.f};
  if (inside) {
    for (int k = 0; k < 3; ++k) g[k] = grad_color[(3 * b + k) * hw + pix];
    g[3] = grad_depth[b * hw + pix];
    g[4] = grad_alpha[b * hw + pix];
  }
  const float bg_dot = bg_r * g[0] + bg_g * g[1] + bg_b * g[2];

  if (rank == 0) s_max_last = 0;
  __syncthreads();
  atomicMax(&s_max_last, last);
  __syncthreads();
  const int max_last = min(s_max_last, capacity - start);

  float T = T_final, last_alpha = 0.f;
  float accum[5] = {0.f, 0.f, 0.f, 0.f, 0.f}, last_feat[5] = {0.f, 0.f, 0.f, 0.f, 0.f};
  for (int end = max_last; end > 0; end -= ORTHO_BLOCK) {
    const int begin = max(0, end - ORTHO_BLOCK);
    __syncthreads();
    if (begin + rank < end) {
      const unsigned long long key = keys[start + begin + rank];
      const int gi = ortho_stage(key, b, n, rank, xy, conic, s_id, s_xy, s_conic);
      s_feat[rank][0] = colors[3 * gi];
      s_feat[rank][1] = colors[3 * gi + 1];
      s_feat[rank][2] = colors[3 * gi + 2];
      s_feat[rank][3] = __uint_as_float((unsigned)(key >> 32));
    }
    __syncthreads();
    for (int j = end - begin - 1; j >= 0; --j) {
      if (begin + j >= last) continue;
      const float2 p = s_xy[j];
      const float4 co = s_conic[j];
      const float dx = p.x - pxf, dy = p.y - pyf;
      const float power = ortho_power(co, dx, dy);
      if (power > 0.0f) continue;
      const float G = expf(power);
      const float raw = co.w * G;
      const float alpha = fminf(0.99f, raw);
      if (alpha < 1.0f / 255.0f) continue;
      T = T / (1.f - alpha);
      const float w = alpha * T;
      const float feat[5] = {s_feat[j][0], s_feat[j][1], s_feat[j][2], s_feat[j][3], 1.f};
      float dL_dalpha = 0.f;
#pragma unroll
      for (int k = 0; k < 5; ++k) {
        accum[k] = last_alpha * last_feat[k] + (1.f - last_alpha) * accum[k];
        last_feat[k] = feat[k];
        dL_dalpha += (feat[k] - accum[k]) * g[k];
      }
      dL_dalpha = dL_dalpha * T - T_final / (1.f - alpha) * bg_dot;
      last_alpha = alpha;

      const int gi = s_id[j];
      atomicAdd(d_color + 3 * gi, w * g[0]);
      atomicAdd(d_color + 3 * gi + 1, w * g[1]);
      atomicAdd(d_color + 3 * gi + 2, w * g[2]);
      atomicAdd(d_depth + gi, w * g[3]);
      if (raw < 0.99f) {
        const float dL_dpower = alpha * dL_dalpha;
        atomicAdd(d_opacity + gi, G * dL_dalpha);
        atomicAdd(d_xy + 2 * gi, -dL_dpower * (co.x * dx + co.y * dy));
        atomicAdd(d_xy + 2 * gi + 1, -dL_dpower * (co.z * dy + co.y * dx));
        atomicAdd(d_conic + 3 * gi, -0.5f * dL_dpower * dx * dx);
        atomicAdd(d_conic + 3 * gi + 1, -dL_dpower * dx * dy);
        atomicAdd(d_conic + 3 * gi + 2, -0.5f * dL_dpower * dy * dy);
      }
    }
  }
}
