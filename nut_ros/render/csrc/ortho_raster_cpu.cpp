// Orthographic Gaussian rasterizer, forward pass on the CPU (plain C++17 and std::thread: no torch headers, built by
// nut_ros/render/_cpu.py with the system compiler and called through ctypes).
//
// Input: the Gaussians' means, scales, rotations, opacities and colours; each is projected here as
// nut_ros.render.projection.project_gaussians does it in torch (pixel centre, depth, screen covariance and its conic,
// tile rectangle, visibility), in the same float32 operations and order. Output and compositing are those
// of ortho_raster_kernels.cuh::ortho_render: per pixel, the Gaussians whose 16x16 tile rectangle holds the pixel's tile
// are visited in (depth, index) order; power = -(a dx^2 + c dy^2)/2 - b dx dy is skipped when > 0, alpha =
// min(0.99, o exp(power)) when < 1/255; the pixel stops at the first Gaussian that would take T below 1e-4 (that one
// excluded). color = sum(c a T) + T bg, depth = sum(d a T), alpha = sum(a T).
//
// Work is binned per 4x4-pixel block (4 divides the tile, so a block lies in one tile) instead of per tile: a
// Gaussian is listed in the blocks of its tile rectangle that meet the bounding box of its alpha >= 1/255 ellipse,
// widened so that rounding can only add candidates. A block's list is its pixels' tile list without Gaussians that
// the per-pixel tests would skip anyway, so the result is the tile kernel's. The lists are built and composited in
// depth-ordered chunks of bounded size, each block keeping its pixels' state between chunks.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <numeric>
#include <system_error>
#include <thread>
#include <vector>

#include "ortho_raster_config.h"

namespace {

constexpr int kBlock = 4;
constexpr int kPerTile = ORTHO_TILE / kBlock;
static_assert(ORTHO_TILE % kBlock == 0, "pixel blocks must tile the rasterizer's tiles");
constexpr float kAlphaMin = 1.0f / 255.0f;
constexpr float kAlphaMax = 0.99f;
constexpr float kTMin = 0.0001f;
constexpr float kSlack = 1.001f;  // relative widening of the ellipse's bounding box (float safety)

struct Splat {
  float u, v, ca, cb, cc, opacity, depth;
  int id;
};

struct Image {
  int n, height, width;
  const float *uv, *depth, *cov, *conic, *opacity, *colors;
  const int *rect;  // per Gaussian: first tile (x, y), one past the last (x, y)
  const uint8_t* visible;
  float bg[3];
  float *out_color, *out_depth, *out_alpha;
};

// A tile bound as project_gaussians takes it: floor, NaN to 0, then clamped to [0, grid]. (For +inf, or a value past
// int64, torch's conversion gives INT64_MIN instead of the grid; the rectangle's area is 0 either way, so the Gaussian
// is culled alike.)
int tile_bound(float t, int grid) {
  const float f = std::floor(t);
  if (std::isnan(f) || f <= 0.0f) return 0;
  return f >= static_cast<float>(grid) ? grid : static_cast<int>(f);
}

// project_gaussians (nut_ros/render/projection.py) for one Gaussian, operation for operation in float32 (no fused
// multiply-adds: GCC's optimize attribute, clang's pragma), so that the CPU kernel renders what the torch rasterizer
// renders. Its constants are projection.py's: p_w's 1e-7, EIGEN_FLOOR (0.1) and the 3-sigma radius.
__attribute__((optimize("fp-contract=off"))) void project(int height, int width, float lowpass, const float* m,
                                                         const float* s, const float* q, float* uv, float* depth,
                                                         float* cov, float* conic, int* rect, uint8_t* visible) {
#ifdef __clang__
#pragma clang fp contract(off)
#endif
  const float x = m[0], y = m[1], z = m[2];
  const float p_w = 1.0f / (1.0f + 1e-7f);
  const float fx = width / 2.0f, fy = height / 2.0f;
  const float u = ((x * p_w + 1.0f) * static_cast<float>(width) - 1.0f) * 0.5f;
  const float v = ((-z * p_w + 1.0f) * static_cast<float>(height) - 1.0f) * 0.5f;
  const float r = q[0], qx = q[1], qy = q[2], qz = q[3];
  const float m00 = (1.0f - 2.0f * (qy * qy + qz * qz)) * s[0], m01 = (2.0f * (qx * qy - r * qz)) * s[1],
              m02 = (2.0f * (qx * qz + r * qy)) * s[2];
  const float m20 = (2.0f * (qx * qz - r * qy)) * s[0], m21 = (2.0f * (qy * qz + r * qx)) * s[1],
              m22 = (1.0f - 2.0f * (qx * qx + qy * qy)) * s[2];
  const float sxx = m00 * m00 + m01 * m01 + m02 * m02;
  const float sxz = m00 * m20 + m01 * m21 + m02 * m22;
  const float szz = m20 * m20 + m21 * m21 + m22 * m22;
  const float a = static_cast<float>(static_cast<double>(fx) * fx) * sxx + lowpass;
  const float b = static_cast<float>(-(static_cast<double>(fx) * fy)) * sxz;
  const float c = static_cast<float>(static_cast<double>(fy) * fy) * szz + lowpass;
  const float det = a * c - b * b;
  const bool definite = det > 0.0f && std::isfinite(det);
  const float det_inv = 1.0f / (definite ? det : 1.0f);
  const float mid = 0.5f * (a + c);
  const float lam = mid + std::sqrt(std::max(mid * mid - det, 0.1f));
  const float radius = std::ceil(3.0f * std::sqrt(lam));
  const int gx = (width + ORTHO_TILE - 1) / ORTHO_TILE, gy = (height + ORTHO_TILE - 1) / ORTHO_TILE;
  const float tile = static_cast<float>(ORTHO_TILE);
  rect[0] = tile_bound((u - radius) / tile, gx);
  rect[1] = tile_bound((v - radius) / tile, gy);
  rect[2] = tile_bound((u + radius + tile - 1.0f) / tile, gx);  // ((u + radius) + TILE) - 1, as torch adds
  rect[3] = tile_bound((v + radius + tile - 1.0f) / tile, gy);
  uv[0] = u, uv[1] = v;
  *depth = y;
  cov[0] = a, cov[1] = b, cov[2] = c;
  conic[0] = c * det_inv, conic[1] = -b * det_inv, conic[2] = a * det_inv;
  *visible = y > 0.0f && definite && (rect[2] - rect[0]) * (rect[3] - rect[1]) > 0;
}

// The listed Gaussians (visible, alpha can reach 1/255) in (depth, index) order, and each one's block rectangle
// [x0, x1) x [y0, y1) (4 ints).
void list_splats(const Image& im, int nbx, int nby, std::vector<Splat>& splats, std::vector<int>& box) {
  std::vector<uint64_t> keys;  // (depth bits, index): a visible Gaussian's depth is > 0, so its bits order like it
  keys.reserve(im.n);
  for (int g = 0; g < im.n; ++g)
    if (im.visible[g] && im.opacity[g] >= kAlphaMin) {
      uint32_t bits;
      std::memcpy(&bits, im.depth + g, sizeof bits);
      keys.push_back(static_cast<uint64_t>(bits) << 32 | static_cast<uint32_t>(g));
    }
  std::sort(keys.begin(), keys.end());
  splats.resize(keys.size());
  box.resize(4 * keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    const int g = static_cast<int>(keys[i] & 0xffffffffu);
    const float u = im.uv[2 * g], v = im.uv[2 * g + 1];
    splats[i] = Splat{u, v, im.conic[3 * g], im.conic[3 * g + 1], im.conic[3 * g + 2], im.opacity[g], im.depth[g], g};
    const int* t = im.rect + 4 * g;
    int x0 = t[0] * kPerTile, y0 = t[1] * kPerTile;
    int x1 = std::min(nbx, t[2] * kPerTile), y1 = std::min(nby, t[3] * kPerTile);
    const float a = im.cov[3 * g], b = im.cov[3 * g + 1], c = im.cov[3 * g + 2];
    if (a * c > b * b) {  // definite: alpha >= 1/255 only inside d^T conic d <= r2, within sqrt(r2 a), sqrt(r2 c)
      const float r2 = 2.0f * std::log(std::max(im.opacity[g] * 255.0f, 1.0f)) * kSlack + 1e-4f;
      const float ex = std::sqrt(r2 * std::max(a, 0.0f)) + 1e-3f, ey = std::sqrt(r2 * std::max(c, 0.0f)) + 1e-3f;
      x0 = std::max(x0, static_cast<int>(std::floor((u - ex) / kBlock)));
      y0 = std::max(y0, static_cast<int>(std::floor((v - ey) / kBlock)));
      x1 = std::min(x1, static_cast<int>(std::floor((u + ex) / kBlock)) + 1);
      y1 = std::min(y1, static_cast<int>(std::floor((v + ey) / kBlock)) + 1);
    }
    x0 = std::max(x0, 0);
    y0 = std::max(y0, 0);
    box[4 * i] = x0, box[4 * i + 1] = y0, box[4 * i + 2] = std::max(x1, x0), box[4 * i + 3] = std::max(y1, y0);
  }
}

constexpr int kPixels = kBlock * kBlock;
constexpr int kLanes = 8;  // a block's pixels are worked on as 2 rows of 8 lanes (GCC/Clang vector extensions)
constexpr int kRows = kPixels / kLanes;
typedef float Floats __attribute__((vector_size(4 * kLanes)));
typedef int32_t Ints __attribute__((vector_size(4 * kLanes)));
static_assert(kLanes == 2 * kBlock, "a row of lanes is two pixel rows of the block");
const Floats kLaneX = {0, 1, 2, 3, 0, 1, 2, 3}, kLaneY = {0, 0, 0, 0, 1, 1, 1, 1};  // a lane's pixel in its row

// exp(x) for x <= 0 in float32, lane by lane (Cephes' expf: range reduction by ln 2, a degree-6 polynomial; within
// 2 ulp of libm's expf; exp(-87), about 1.6e-38, for x below -87).
inline Floats exp_nonpositive(Floats x) {
  x = x < -87.0f ? Floats{} - 87.0f : x;
  const Floats t = x * 1.44269504088896341f + 0.5f;
  Ints n = __builtin_convertvector(t, Ints);  // truncation ...
  n += t < __builtin_convertvector(n, Floats);  // ... to floor (a true comparison is -1)
  const Floats nf = __builtin_convertvector(n, Floats);
  const Floats r = (x - nf * 0.693359375f) + nf * 2.12194440e-4f;
  Floats p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return (p * r * r + r + 1.0f) * reinterpret_cast<Floats>((n + 127) << 23);  // times 2^n (n >= -126 here)
}

// A block's 16 pixels between chunks: transmittance, accumulated colour, depth and alpha, and which still composite.
struct Block {
  Floats T[kRows], r[kRows], g[kRows], b[kRows], d[kRows], acc[kRows];
  Ints live[kRows];
  bool done;

  void start(int bx, int by, int width, int height) {
    for (int i = 0; i < kPixels; ++i) {
      const int px = bx * kBlock + i % kBlock, py = by * kBlock + i / kBlock;
      live[i / kLanes][i % kLanes] = px < width && py < height ? -1 : 0;
    }
    for (int k = 0; k < kRows; ++k) T[k] = Floats{} + 1.0f, r[k] = g[k] = b[k] = d[k] = acc[k] = Floats{};
    done = false;
  }
};

// Front-to-back compositing of the candidates splats[list[0..count)] over one block: each is applied to the block's
// 16 pixels at once; the block is done once all its pixels have stopped.
void composite(Block& s, const Image& im, int bx, int by, const Splat* splats, const int* list, int count) {
  Floats pxf[kRows], pyf[kRows];
  for (int k = 0; k < kRows; ++k) {
    pxf[k] = kLaneX + static_cast<float>(bx * kBlock);
    pyf[k] = kLaneY + static_cast<float>(by * kBlock + k * kLanes / kBlock);
  }
  const Floats zero{};
  for (int j = 0; j < count; ++j) {
    const Splat& q = splats[list[j]];
    const float* col = im.colors + 3 * q.id;
    for (int k = 0; k < kRows; ++k) {
      const Floats dx = q.u - pxf[k], dy = q.v - pyf[k];
      const Floats power = -0.5f * (q.ca * dx * dx + q.cc * dy * dy) - q.cb * dx * dy;
      Floats alpha = q.opacity * exp_nonpositive(power > 0.0f ? zero : power);
      alpha = alpha > kAlphaMax ? zero + kAlphaMax : alpha;
      const Floats test_T = s.T[k] * (1.0f - alpha);
      const Ints valid = s.live[k] & (power <= 0.0f) & (alpha >= kAlphaMin);
      const Ints stop = valid & (test_T < kTMin);
      const Ints use = valid & ~stop;
      const Floats w = use ? alpha * s.T[k] : zero;
      s.r[k] += col[0] * w;
      s.g[k] += col[1] * w;
      s.b[k] += col[2] * w;
      s.d[k] += q.depth * w;
      s.acc[k] += w;
      s.T[k] = use ? test_T : s.T[k];
      s.live[k] &= ~stop;
    }
    if (j % 8 == 7 || j == count - 1) {  // every few candidates: has every pixel stopped?
      Ints any = s.live[0];
      for (int k = 1; k < kRows; ++k) any |= s.live[k];
      int32_t found = 0;
      for (int lane = 0; lane < kLanes; ++lane) found |= any[lane];
      if (!found) {
        s.done = true;
        return;
      }
    }
  }
}

// `max_entries` bounds the (block, Gaussian) list entries held at once (4 bytes each): the Gaussians are binned and
// composited in depth-ordered chunks of at most that many entries (a chunk holds at least one Gaussian, whose entries
// are at most the image's blocks), so memory does not grow with the splats' footprint.
void render_image(const Image& im, int threads, size_t max_entries) {
  const int nbx = (im.width + kBlock - 1) / kBlock, nby = (im.height + kBlock - 1) / kBlock;
  const size_t blocks = static_cast<size_t>(nbx) * nby;
  std::vector<Splat> splats;
  std::vector<int> box;
  list_splats(im, nbx, nby, splats, box);
  std::vector<Block> state(blocks);
  for (int by = 0; by < nby; ++by)
    for (int bx = 0; bx < nbx; ++bx) state[static_cast<size_t>(by) * nbx + bx].start(bx, by, im.width, im.height);

  std::vector<int> start(blocks + 1), cursor(blocks), list;
  const size_t listed = splats.size();
  for (size_t first = 0; first < listed;) {
    // the next chunk: Gaussians [first, last) with at most max_entries entries (at least one Gaussian)
    size_t last = first, entries = 0;
    while (last < listed) {
      const int* q = &box[4 * last];
      const size_t area = static_cast<size_t>(q[2] - q[0]) * (q[3] - q[1]);
      if (last > first && entries + area > max_entries) break;
      entries += area;
      ++last;
    }
    std::fill(start.begin(), start.end(), 0);
    for (size_t i = first; i < last; ++i)
      for (int by = box[4 * i + 1]; by < box[4 * i + 3]; ++by)
        for (int bx = box[4 * i]; bx < box[4 * i + 2]; ++bx) ++start[static_cast<size_t>(by) * nbx + bx + 1];
    std::partial_sum(start.begin(), start.end(), start.begin());
    std::copy(start.begin(), start.end() - 1, cursor.begin());
    list.resize(entries);
    for (size_t i = first; i < last; ++i)
      for (int by = box[4 * i + 1]; by < box[4 * i + 3]; ++by)
        for (int bx = box[4 * i]; bx < box[4 * i + 2]; ++bx)
          list[cursor[static_cast<size_t>(by) * nbx + bx]++] = static_cast<int>(i);

    std::atomic<int> next{0};
    auto work = [&]() {  // block rows, taken one at a time (their costs differ widely)
      for (int by = next++; by < nby; by = next++)
        for (int bx = 0; bx < nbx; ++bx) {
          const size_t k = static_cast<size_t>(by) * nbx + bx;
          if (!state[k].done && start[k + 1] > start[k])
            composite(state[k], im, bx, by, splats.data(), list.data() + start[k], start[k + 1] - start[k]);
        }
    };
    std::vector<std::thread> pool;
    try {
      for (int t = 1; t < std::min(threads, nby); ++t) pool.emplace_back(work);
    } catch (const std::system_error&) {  // no more threads to be had: the ones started and this one do the work
    }
    work();
    for (auto& t : pool) t.join();
    first = last;
  }

  const int hw = im.height * im.width;
  for (int py = 0; py < im.height; ++py)
    for (int px = 0; px < im.width; ++px) {
      const Block& s = state[static_cast<size_t>(py / kBlock) * nbx + px / kBlock];
      const int i = (py % kBlock) * kBlock + px % kBlock, row = i / kLanes, lane = i % kLanes, pix = py * im.width + px;
      const float t = s.T[row][lane];
      im.out_color[pix] = s.r[row][lane] + t * im.bg[0];
      im.out_color[hw + pix] = s.g[row][lane] + t * im.bg[1];
      im.out_color[2 * hw + pix] = s.b[row][lane] + t * im.bg[2];
      im.out_depth[pix] = s.d[row][lane];
      im.out_alpha[pix] = s.acc[row][lane];
    }
}

}  // namespace

// Renders `batch` images of `n` Gaussians each (arrays batch-major, as torch lays out [B, N, .] tensors: means and
// scales 3, rotations 4 (w, x, y, z, unnormalised), opacities 1, colours 3 floats per Gaussian); outputs are planar:
// color [B, 3, H, W], depth and alpha [B, 1, H, W]; `lowpass` px^2 on the screen covariance's diagonal; `threads`
// workers, at most `max_entries` list entries at once (see render_image). Returns 0, or 1 when memory ran out (no
// exception crosses into the caller).
extern "C" int ortho_render_cpu(int batch, int n, int height, int width, float lowpass, const float* means,
                                const float* scales, const float* rotations, const float* opacity, const float* colors,
                                const float* background, float* out_color, float* out_depth, float* out_alpha,
                                int threads, int64_t max_entries) {
  const size_t hw = static_cast<size_t>(height) * width;
  try {
    std::vector<float> uv(2 * static_cast<size_t>(n)), depth(n), cov(3 * static_cast<size_t>(n)),
        conic(3 * static_cast<size_t>(n));
    std::vector<int> rect(4 * static_cast<size_t>(n));
    std::vector<uint8_t> visible(n);
    for (int b = 0; b < batch; ++b) {
      const size_t g = static_cast<size_t>(b) * n;
      for (int k = 0; k < n; ++k)
        project(height, width, lowpass, means + 3 * (g + k), scales + 3 * (g + k), rotations + 4 * (g + k),
                &uv[2 * k], &depth[k], &cov[3 * k], &conic[3 * k], &rect[4 * k], &visible[k]);
      const Image im{n, height, width, uv.data(), depth.data(), cov.data(), conic.data(), opacity + g,
                     colors + 3 * g, rect.data(), visible.data(), {background[0], background[1], background[2]},
                     out_color + 3 * hw * b, out_depth + hw * b, out_alpha + hw * b};
      render_image(im, std::max(threads, 1),  // list offsets are ints: at most 2^30 entries at once
                   static_cast<size_t>(std::clamp<int64_t>(max_entries, 1, int64_t{1} << 30)));
    }
  } catch (const std::bad_alloc&) {
    return 1;
  }
  return 0;
}
