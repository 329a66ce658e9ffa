// examples/01_tensors.cpp: tensors on the CPU or a GPU, explicit transfers, element-wise ops and a
// reduction. Run: build/default/examples/example_01_tensors [cuda]
#include <fovea/fovea.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  using namespace fovea;
  std::printf("%s\n", backend_summary().c_str());
  try {
    const Device device = Device::parse(argc > 1 ? argv[1] : "cpu");
    Tensor x = Tensor::from({-1, 2, -3, 4, 5, -6, 7, -8}, {2, 4}).to(device);  // (N=2, F=4)
    Tensor y(x.shape(), device);
    relu_forward(x, y);       // y = max(x, 0)
    axpy(0.5f, x, y);         // y += 0.5 x
    Tensor row_sums = reduce(y, 1, ReduceKind::sum);  // (2, 1)
    const auto v = row_sums.to_vector();               // copies back to the host
    std::printf("row sums on %s: %g %g\n", device.str().c_str(), v[0], v[1]);
    const auto stats = memory_stats(device);
    std::printf("memory on %s: %zu bytes in use, peak %zu\n", device.str().c_str(), stats.current_bytes,
                stats.peak_bytes);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
