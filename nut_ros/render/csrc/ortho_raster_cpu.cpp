// Orthographic Gaussian rasterizer, forward pass on the CPU (plain C++17 and std::thread: no torch headers, built by
// nut_ros/render/_cpu.py with the system compiler and called through ctypes).
//
// Input: the projected Gaussians of nut_ros.render.projection.project_gaussians (pixel centre, depth, screen
// covariance and its conic, tile rectangle, visibility), with opacities and colours. Output and compositing are those
// of ortho_raster_kernels.cuh::ortho_render: per pixel, the Gaussians whose 16x16 tile rectangle holds the pixel's tile
// are visited in (depth, index) order; power = -(a dx^2 + c dy^2)/2 - b dx dy is skipped when > 0, alpha =
// min(0.99, o exp(power)) when < 1/255; the pixel stops at the first Gaussian that would take T below 1e-4 (that one
// excluded). color = sum(c a T) + T bg, depth = sum(d a T), alpha = sum(a T).
//
// Work is binned per 4x4-pixel block (4 divides the tile, so a block lies in one tile) instead of per tile: a
// Gaussian is listed in the blocks of its tile rectangle that meet the bounding box of its alpha >= 1/255 ellipse,
// widened so that rounding can only add candidates. A block's list is its pixels' tile list without Gaussians that
// the per-pixel tests would skip anyway, so the result is the tile kernel's.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
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
  const int64_t *rect_min, *rect_max;
  const uint8_t* visible;
  float bg[3];
  float *out_color, *out_depth, *out_alpha;
};

// Candidate lists per block: the Gaussians of block k are splats[start[k] .. start[k + 1]), in (depth, index) order.
void bin(const Image& im, int nbx, int nby, std::vector<Splat>& splats, std::vector<int>& start) {
  std::vector<uint64_t> keys;  // (depth bits, index): a visible Gaussian's depth is > 0, so its bits order like it
  keys.reserve(im.n);
  for (int g = 0; g < im.n; ++g)
    if (im.visible[g] && im.opacity[g] >= kAlphaMin) {
      uint32_t bits;
      std::memcpy(&bits, im.depth + g, sizeof bits);
      keys.push_back(static_cast<uint64_t>(bits) << 32 | static_cast<uint32_t>(g));
    }
  std::sort(keys.begin(), keys.end());
  std::vector<int> order(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) order[i] = static_cast<int>(keys[i] & 0xffffffffu);

  // block rectangle [x0, x1) x [y0, y1) of each listed Gaussian
  std::vector<int> box(4 * order.size());
  std::vector<int> count(static_cast<size_t>(nbx) * nby + 1, 0);
  for (size_t i = 0; i < order.size(); ++i) {
    const int g = order[i];
    int x0 = static_cast<int>(im.rect_min[2 * g]) * kPerTile, y0 = static_cast<int>(im.rect_min[2 * g + 1]) * kPerTile;
    int x1 = std::min(nbx, static_cast<int>(im.rect_max[2 * g]) * kPerTile);
    int y1 = std::min(nby, static_cast<int>(im.rect_max[2 * g + 1]) * kPerTile);
    const float a = im.cov[3 * g], b = im.cov[3 * g + 1], c = im.cov[3 * g + 2];
    if (a * c > b * b) {  // definite: alpha >= 1/255 only inside d^T conic d <= r2, within sqrt(r2 a), sqrt(r2 c)
      const float r2 = 2.0f * std::log(std::max(im.opacity[g] * 255.0f, 1.0f)) * kSlack + 1e-4f;
      const float ex = std::sqrt(r2 * std::max(a, 0.0f)) + 1e-3f, ey = std::sqrt(r2 * std::max(c, 0.0f)) + 1e-3f;
      const float u = im.uv[2 * g], v = im.uv[2 * g + 1];
      x0 = std::max(x0, static_cast<int>(std::floor((u - ex) / kBlock)));
      y0 = std::max(y0, static_cast<int>(std::floor((v - ey) / kBlock)));
      x1 = std::min(x1, static_cast<int>(std::floor((u + ex) / kBlock)) + 1);
      y1 = std::min(y1, static_cast<int>(std::floor((v + ey) / kBlock)) + 1);
    }
    x0 = std::max(x0, 0);
    y0 = std::max(y0, 0);
    x1 = std::max(x1, x0);
    y1 = std::max(y1, y0);
    box[4 * i] = x0, box[4 * i + 1] = y0, box[4 * i + 2] = x1, box[4 * i + 3] = y1;
    for (int by = y0; by < y1; ++by)
      for (int bx = x0; bx < x1; ++bx) ++count[static_cast<size_t>(by) * nbx + bx + 1];
  }
  start.assign(count.size(), 0);
  std::partial_sum(count.begin(), count.end(), start.begin());
  splats.resize(start.back());
  std::vector<int> cursor(start.begin(), start.end() - 1);
  for (size_t i = 0; i < order.size(); ++i) {
    const int g = order[i];
    const float o = im.opacity[g];
    const Splat s{im.uv[2 * g], im.uv[2 * g + 1], im.conic[3 * g], im.conic[3 * g + 1], im.conic[3 * g + 2], o,
                  im.depth[g], g};
    for (int by = box[4 * i + 1]; by < box[4 * i + 3]; ++by)
      for (int bx = box[4 * i]; bx < box[4 * i + 2]; ++bx) splats[cursor[static_cast<size_t>(by) * nbx + bx]++] = s;
  }
}

constexpr int kPixels = kBlock * kBlock;
constexpr int kLanes = 8;  // a block's pixels are worked on as 2 rows of 8 lanes (GCC/Clang vector extensions)
constexpr int kRows = kPixels / kLanes;
typedef float Floats __attribute__((vector_size(4 * kLanes)));
typedef int32_t Ints __attribute__((vector_size(4 * kLanes)));

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

// Front-to-back compositing of one pixel block: each candidate is applied to the block's 16 pixels at once; the
// block stops once all its pixels have.
void render_block(const Image& im, int bx, int by, const Splat* first, const Splat* last) {
  Floats pxf[kRows], pyf[kRows], T[kRows], r[kRows], g[kRows], b[kRows], d[kRows], acc[kRows];
  Ints live[kRows];
  for (int i = 0; i < kPixels; ++i) {
    const int px = bx * kBlock + i % kBlock, py = by * kBlock + i / kBlock, row = i / kLanes, lane = i % kLanes;
    pxf[row][lane] = static_cast<float>(px), pyf[row][lane] = static_cast<float>(py);
    live[row][lane] = px < im.width && py < im.height ? -1 : 0;
  }
  const Floats zero{}, one = zero + 1.0f;
  for (int k = 0; k < kRows; ++k) T[k] = one, r[k] = g[k] = b[k] = d[k] = acc[k] = zero;
  int checked = 0;
  for (const Splat* s = first; s != last; ++s) {
    const float* col = im.colors + 3 * s->id;
    for (int k = 0; k < kRows; ++k) {
      const Floats dx = s->u - pxf[k], dy = s->v - pyf[k];
      const Floats power = -0.5f * (s->ca * dx * dx + s->cc * dy * dy) - s->cb * dx * dy;
      Floats alpha = s->opacity * exp_nonpositive(power > 0.0f ? zero : power);
      alpha = alpha > kAlphaMax ? zero + kAlphaMax : alpha;
      const Floats test_T = T[k] * (1.0f - alpha);
      const Ints valid = live[k] & (power <= 0.0f) & (alpha >= kAlphaMin);
      const Ints stop = valid & (test_T < kTMin);
      const Ints use = valid & ~stop;
      const Floats w = use ? alpha * T[k] : zero;
      r[k] += col[0] * w;
      g[k] += col[1] * w;
      b[k] += col[2] * w;
      d[k] += s->depth * w;
      acc[k] += w;
      T[k] = use ? test_T : T[k];
      live[k] &= ~stop;
    }
    if (++checked == 8) {  // every few candidates: has every pixel stopped?
      checked = 0;
      Ints any = live[0];
      for (int k = 1; k < kRows; ++k) any |= live[k];
      int32_t found = 0;
      for (int lane = 0; lane < kLanes; ++lane) found |= any[lane];
      if (!found) break;
    }
  }
  const int hw = im.height * im.width;
  for (int i = 0; i < kPixels; ++i) {
    const int px = bx * kBlock + i % kBlock, py = by * kBlock + i / kBlock, row = i / kLanes, lane = i % kLanes;
    if (px >= im.width || py >= im.height) continue;
    const int pix = py * im.width + px;
    const float t = T[row][lane];
    im.out_color[pix] = r[row][lane] + t * im.bg[0];
    im.out_color[hw + pix] = g[row][lane] + t * im.bg[1];
    im.out_color[2 * hw + pix] = b[row][lane] + t * im.bg[2];
    im.out_depth[pix] = d[row][lane];
    im.out_alpha[pix] = acc[row][lane];
  }
}

void render_image(const Image& im, int threads) {
  const int nbx = (im.width + kBlock - 1) / kBlock, nby = (im.height + kBlock - 1) / kBlock;
  std::vector<Splat> splats;
  std::vector<int> start;
  bin(im, nbx, nby, splats, start);
  std::atomic<int> next{0};
  auto work = [&]() {  // block rows, taken one at a time (their costs differ widely)
    for (int by = next++; by < nby; by = next++)
      for (int bx = 0; bx < nbx; ++bx) {
        const size_t k = static_cast<size_t>(by) * nbx + bx;
        render_block(im, bx, by, splats.data() + start[k], splats.data() + start[k + 1]);
      }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < std::min(threads, nby); ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
}

}  // namespace

// Renders `batch` images of `n` Gaussians each (arrays batch-major, as torch lays out [B, N, .] tensors); outputs are
// planar: color [B, 3, H, W], depth and alpha [B, 1, H, W]. Returns 0.
extern "C" int ortho_render_cpu(int batch, int n, int height, int width, const float* uv, const float* depth,
                                const float* cov, const float* conic, const float* opacity, const float* colors,
                                const int64_t* rect_min, const int64_t* rect_max, const uint8_t* visible,
                                const float* background, float* out_color, float* out_depth, float* out_alpha,
                                int threads) {
  const size_t hw = static_cast<size_t>(height) * width;
  for (int b = 0; b < batch; ++b) {
    const size_t g = static_cast<size_t>(b) * n;
    const Image im{n, height, width, uv + 2 * g, depth + g, cov + 3 * g, conic + 3 * g, opacity + g, colors + 3 * g,
                   rect_min + 2 * g, rect_max + 2 * g, visible + g, {background[0], background[1], background[2]},
                   out_color + 3 * hw * b, out_depth + hw * b, out_alpha + hw * b};
    render_image(im, std::max(threads, 1));
  }
  return 0;
}
