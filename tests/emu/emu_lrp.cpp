// tests/emu/emu_lrp.cpp: LRP's mean-share kernel (kernels/lrp.cuh: one warp per plane, a double sum
// through a shuffle tree) run on the CPU by the emulation layer (emu_cuda.hpp), against the CPU twin
// (fovea/cpu/lrp.hpp). Planes of 1 to 4099 values, more planes than the grid's warps (warps stride)
// and a plane count that leaves a block's last warps idle. The plane sums run in another order than
// the CPU's, so outputs must agree to a float ulp or so, not bitwise. Exit status 1 on any failure.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "emu_cuda.hpp"
#include "fovea/cpu/lrp.hpp"

namespace fovea::emu {
#include "lrp_device.inc"
}  // namespace fovea::emu

using namespace fovea;

namespace {

int failures = 0;

void check(std::int64_t n_images, std::int64_t channels, std::int64_t hw, unsigned grid, float epsilon) {
  const std::int64_t planes = n_images * channels, total = planes * hw;
  std::mt19937_64 gen(static_cast<std::uint64_t>(planes * 7919 + hw));
  std::normal_distribution<float> d(0.5f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(total)), r(static_cast<std::size_t>(planes));
  for (float& v : x) v = std::max(d(gen), 0.0f);  // post-ReLU activations: zeros included
  for (float& v : r) v = d(gen);
  if (planes > 2) std::fill(x.begin(), x.begin() + hw, 0.0f);  // an all-zero plane: mean 0, stab = epsilon
  const Shape xs{n_images, channels, 1, hw}, rs{n_images, channels};
  std::vector<float> want(x.size()), got(x.size(), std::numeric_limits<float>::quiet_NaN());
  cpu::lrp_mean_share(CView(x.data(), xs, Device::cpu()), CView(r.data(), rs, Device::cpu()), epsilon,
                      View(want.data(), xs, Device::cpu()));
  emu::launch(dim3(grid), emu::kBlock, 0, true,
              [&] { emu::lrp_mean_share_kernel(x.data(), r.data(), got.data(), planes, hw, epsilon); });
  int bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i]) && std::isnan(got[i])) continue;  // 0 / 0 where epsilon = 0: NaN on both
    const double err = std::fabs(double(got[i]) - want[i]);
    if (!(err <= 1e-6 * std::fabs(want[i]) + 1e-30)) {
      if (bad < 3)
        std::printf("  [%zu] got %.9g want %.9g\n", i, static_cast<double>(got[i]),
                    static_cast<double>(want[i]));
      ++bad;
    }
  }
  std::printf("%s lrp_mean_share N=%lld C=%lld HW=%lld grid=%u eps=%g: %d of %lld off\n",
              bad ? "FAIL" : "ok  ", static_cast<long long>(n_images), static_cast<long long>(channels),
              static_cast<long long>(hw), grid, static_cast<double>(epsilon), bad,
              static_cast<long long>(total));
  failures += bad != 0;
}

}  // namespace

int main() {
  check(1, 1, 1, 1, 1e-6f);
  check(2, 3, 49, 1, 1e-6f);    // 6 planes: two of a block's eight warps idle
  check(3, 37, 7, 2, 0.0f);     // 111 planes over 16 warps: each warp walks several
  check(2, 5, 1089, 3, 1e-2f);  // 33 x 33 planes
  check(1, 9, 4099, 1, 1e-6f);  // more values than a warp's stride many times over
  if (failures) std::printf("%d case(s) failed\n", failures);
  return failures ? 1 : 0;
}
