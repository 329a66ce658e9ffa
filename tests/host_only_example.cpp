// tests/host_only_example.cpp: a user program built with g++ alone (no FOVEA_WITH_CUDA, no CUDA
// include path): the umbrella header must compile and the ops must run on the CPU.
#include <fovea/fovea.hpp>

#include <cstdio>

int main() {
  using namespace fovea;
  Tensor x = Tensor::from({-1.0f, 2.0f, -3.0f, 4.0f, 5.0f, -6.0f}, {2, 3});
  Tensor y(x.shape());
  relu_forward(x, y);          // (2, 3)
  axpy(2.0f, x, y);            // y = 2x + relu(x)
  Tensor s = reduce(y, 1, ReduceKind::sum);  // (2, 1)
  const auto v = s.to_vector();
  // Row 0: 2*(-1+2-3) + (0+2+0) = -2; row 1: 2*(4+5-6) + (4+5+0) = 15.
  if (v[0] != -2.0f || v[1] != 15.0f) {
    std::printf("wrong result: %g %g\n", v[0], v[1]);
    return 1;
  }
  bool threw = false;
  try {
    Tensor g(Shape{2}, Device::cuda(0));
  } catch (const Error&) {
    threw = true;  // no CUDA in this build: an error, never a silent CPU fallback
  }
  if (!threw) return 1;
  std::printf("%s\n", backend_summary().c_str());
  return 0;
}
