// tests/test_conv.cpp: conv2d and linear on the CPU beyond the harness cases (tests/cases/conv.hpp,
// linear.hpp, run from test_ops.cpp): cpu::gemm against a naive product, accumulation, shape errors.
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "cases/conv.hpp"
#include "cases/linear.hpp"
#include "op_cases.hpp"
#include "test_support.hpp"

namespace fovea::testing {
namespace {

using fovea::testing::error_of;

Tensor random_tensor(const Shape& s, std::uint64_t seed) {
  return Tensor::from(random_values(s.numel(), InputKind::normal, seed), s);
}

// Every transpose combination and leading dimensions wider than the matrix, beta 0 over NaN and
// beta 1, against a product in double.
TEST(CpuGemm, MatchesNaiveProductForAllTransposes) {
  const std::int64_t M = 37, N = 70, K = 300, pad = 3;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (float beta : {0.0f, 1.0f}) {
        SCOPED_TRACE(std::string("trans_a ") + (ta ? "1" : "0") + " trans_b " + (tb ? "1" : "0") + " beta " +
                     std::to_string(beta));
        const std::int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
        const auto a = random_values((ta ? K : M) * lda, InputKind::normal, 1);
        const auto b = random_values((tb ? N : K) * ldb, InputKind::normal, 2);
        auto c = beta == 0.0f ? std::vector<float>(M * ldc, std::numeric_limits<float>::quiet_NaN())
                              : random_values(M * ldc, InputKind::normal, 3);
        std::vector<double> want(M * N);
        std::vector<float> got(M * N);
        for (std::int64_t i = 0; i < M; ++i)
          for (std::int64_t j = 0; j < N; ++j) {
            double s = 0;
            for (std::int64_t p = 0; p < K; ++p)
              s += static_cast<double>(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
            want[i * N + j] = 0.5 * s + (beta == 0.0f ? 0.0 : c[i * ldc + j]);
          }
        cpu::gemm(ta, tb, M, N, K, 0.5f, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
        for (std::int64_t i = 0; i < M; ++i)
          for (std::int64_t j = 0; j < N; ++j) got[i * N + j] = c[i * ldc + j];
        EXPECT_TRUE(all_close(std::string("gemm (") + cpu::gemm_backend() + ")", got, want, {1e-4, 1e-5}));
      }
}

TEST(CpuGemm, RejectsLeadingDimensionsSmallerThanTheMatrix) {
  std::vector<float> a(6), b(6), c(4);
  EXPECT_THROW(cpu::gemm(false, false, 2, 2, 3, 1.0f, a.data(), 2, b.data(), 2, 0.0f, c.data(), 2), Error);
}

TEST(Conv2d, OutputShapeFollowsPyTorch) {
  EXPECT_EQ(conv2d_output_shape({2, 3, 224, 224}, {64, 3, 7, 7}, {2, 2, 3, 3}), (Shape{2, 64, 112, 112}));
  EXPECT_EQ(conv2d_output_shape({2, 64, 56, 56}, {64, 64, 3, 3}, {2, 2, 1, 1}), (Shape{2, 64, 28, 28}));
  EXPECT_EQ(conv2d_output_shape({1, 3, 9, 9}, {4, 3, 3, 3}, {1, 1, 2, 2, 2, 2}), (Shape{1, 4, 9, 9}));
  EXPECT_EQ(conv2d_output_shape({1, 4, 8, 8}, {6, 2, 3, 3}, {1, 1, 0, 0, 1, 1, 2}), (Shape{1, 6, 6, 6}));
}

TEST(Conv2d, ChannelMismatchNamesBothShapes) {
  Tensor x = random_tensor({2, 3, 7, 7}, 1), w = random_tensor({4, 5, 3, 3}, 2), y(Shape{2, 4, 7, 7});
  const std::string msg = error_of([&] { conv2d_forward(x, w, CView(), y, {1, 1, 1, 1}); });
  EXPECT_NE(msg.find("(2, 3, 7, 7)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(4, 5, 3, 3)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("conv2d_forward"), std::string::npos) << msg;
}

TEST(Conv2d, WrongOutputShapeNamesBothShapes) {
  Tensor x = random_tensor({2, 3, 7, 7}, 1), w = random_tensor({4, 3, 3, 3}, 2), y(Shape{2, 4, 5, 5});
  const std::string msg = error_of([&] { conv2d_forward(x, w, CView(), y, {1, 1, 1, 1}); });
  EXPECT_NE(msg.find("(2, 4, 5, 5)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(2, 4, 7, 7)"), std::string::npos) << msg;
  Tensor dx(Shape{2, 3, 7, 7}), dy = random_tensor({2, 4, 5, 5}, 3), dw(Shape{4, 3, 3, 3});
  EXPECT_NE(error_of([&] { conv2d_backward_data(dy, w, dx, {1, 1, 1, 1}); }).find("(2, 4, 5, 5)"), std::string::npos);
  EXPECT_NE(error_of([&] { conv2d_backward_filter(x, dy, dw, {1, 1, 1, 1}); }).find("(2, 4, 7, 7)"),
            std::string::npos);
  Tensor db(Shape{3});
  EXPECT_NE(error_of([&] { conv2d_backward_bias(dy, db); }).find("(3)"), std::string::npos);
}

TEST(Conv2d, RejectsBadParametersAndTooSmallInputs) {
  Tensor x = random_tensor({1, 4, 5, 5}, 1), w = random_tensor({6, 2, 7, 7}, 2), y(Shape{1, 6, 1, 1});
  EXPECT_THROW(conv2d_forward(x, w, CView(), y, {1, 1, 0, 0, 1, 1, 2}), Error);  // 5 < 7: no output pixel
  EXPECT_THROW(conv2d_output_shape({1, 4, 5, 5}, {6, 2, 3, 3}, {0, 1, 1, 1}), Error);
  EXPECT_THROW(conv2d_output_shape({1, 4, 5, 5}, {6, 4, 3, 3}, {1, 1, 1, 1, 1, 1, 4}), Error);
  EXPECT_THROW(conv2d_output_shape({1, 4, 5, 5}, {6, 1, 3, 3}, {1, 1, 1, 1, 1, 1, 4}), Error);  // 6 % 4
  Tensor b(Shape{5});
  Tensor w2 = random_tensor({6, 4, 3, 3}, 3), y2(Shape{1, 6, 5, 5});
  EXPECT_NE(error_of([&] { conv2d_forward(x, w2, b, y2, {1, 1, 1, 1}); }).find("(5)"), std::string::npos);
}

TEST(Conv2d, BackwardFilterAccumulatesAndEmptyBatchZeroes) {
  const Conv2dParams p{1, 1, 1, 1};
  Tensor x = random_tensor({3, 3, 7, 7}, 1), dy = random_tensor({3, 4, 7, 7}, 2);
  Tensor once(Shape{4, 3, 3, 3}), twice(Shape{4, 3, 3, 3});
  conv2d_backward_filter(x, dy, once, p);
  conv2d_backward_filter(x, dy, twice, p);
  conv2d_backward_filter(x, dy, twice, p, /*accumulate=*/true);
  const auto a = once.to_vector(), b = twice.to_vector();
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], 2 * a[i], 1e-4 * (1 + std::fabs(a[i])));

  Tensor x0(Shape{0, 3, 7, 7}), dy0(Shape{0, 4, 7, 7});
  Tensor dw = full({4, 3, 3, 3}, std::numeric_limits<float>::quiet_NaN());
  conv2d_backward_filter(x0, dy0, dw, p);
  for (float v : dw.to_vector()) EXPECT_EQ(v, 0.0f);
}

// A default CView() and a view of 0 elements both mean "no bias".
// im2col, including the block-copy path of "same" convolutions (stride 1, output width = input width),
// against direct indexing with a bounds test, bitwise: pixel values are distinct, padding must read
// +0 (the buffer starts as NaN), over kernels 1 to 5, pads 0 to 3 (wider than the kernel's reach),
// dilations 1 and 2, strides 1 and 2, rectangular images and single rows and columns.
TEST(Conv2d, Im2colMatchesDirectIndexing) {
  int cases = 0, same_cases = 0;
  for (const auto& [C, H, W] :
       std::vector<std::array<std::int64_t, 3>>{{1, 1, 1}, {2, 5, 7}, {3, 8, 8}, {1, 1, 9}, {2, 9, 1}})
    for (std::int64_t k = 1; k <= 5; ++k)
      for (int pad = 0; pad <= 3; ++pad)
        for (int dil = 1; dil <= 2; ++dil)
          for (int stride = 1; stride <= 2; ++stride) {
            Conv2dParams p;
            p.stride_h = p.stride_w = stride;
            p.pad_h = p.pad_w = pad;
            p.dilation_h = p.dilation_w = dil;
            const std::int64_t span = dil * (k - 1) + 1;
            if (H + 2 * pad < span || W + 2 * pad < span) continue;
            const auto g = conv2d_geometry("im2col test", Shape{1, C, H, W}, Shape{1, C, k, k}, p);
            std::vector<float> image(static_cast<std::size_t>(C * H * W));
            for (std::size_t i = 0; i < image.size(); ++i) image[i] = 1.0f + static_cast<float>(i);
            std::vector<float> got(static_cast<std::size_t>(C * k * k * g.P * g.Q),
                                   std::numeric_limits<float>::quiet_NaN());
            ::fovea::detail::conv2d_im2col(image.data(), g, got.data());
            std::size_t bad = 0;
            for (std::int64_t c = 0; c < C; ++c)
              for (std::int64_t r = 0; r < k; ++r)
                for (std::int64_t s = 0; s < k; ++s)
                  for (std::int64_t oh = 0; oh < g.P; ++oh)
                    for (std::int64_t ow = 0; ow < g.Q; ++ow) {
                      const std::int64_t ih = oh * stride - pad + r * dil, iw = ow * stride - pad + s * dil;
                      const float want =
                          ih >= 0 && ih < H && iw >= 0 && iw < W ? image[(c * H + ih) * W + iw] : 0.0f;
                      const float v = got[(((c * k + r) * k + s) * g.P + oh) * g.Q + ow];
                      bad += std::memcmp(&v, &want, sizeof(float)) != 0;
                    }
            // Rows ld apart (a column block of several images' matrices): the same rows, the gaps untouched.
            const std::int64_t pq = g.P * g.Q, ld = pq + 5;
            std::vector<float> wide(static_cast<std::size_t>(C * k * k * ld),
                                    std::numeric_limits<float>::quiet_NaN());
            ::fovea::detail::conv2d_im2col(image.data(), g, wide.data(), ld);
            for (std::int64_t row = 0; row < C * k * k; ++row) {
              bad += std::memcmp(&wide[row * ld], &got[row * pq], pq * sizeof(float)) != 0;
              for (std::int64_t i = pq; i < ld; ++i) bad += !std::isnan(wide[row * ld + i]);
            }
            EXPECT_EQ(bad, 0u) << "C " << C << " H " << H << " W " << W << " kernel " << k << " pad " << pad
                               << " dilation " << dil << " stride " << stride;
            ++cases;
            same_cases += stride == 1 && g.Q == W;
          }
  EXPECT_GE(same_cases, 30);  // the block-copy path ran, on many geometries
  EXPECT_GT(cases, 200);
}

// The weight gradient sums its images in groups (detail::conv2d_filter_group: enough images for
// 1024 output pixels), one GEMM each, and adds the groups' partial sums in order: against a loop in
// double, over batches that split into several groups with a short last one, a batch that is one
// group, 1x1 kernels (whose images are copied side by side), strides, channel groups, and with
// accumulate (dw += the gradient).
TEST(Conv2d, BackwardFilterOverImageGroupsMatchesADoubleLoop) {
  struct Case {
    Shape x, w;
    Conv2dParams p;
    std::int64_t groups_of;  // images per group expected
  };
  const std::vector<Case> cases = {
      {{5, 3, 20, 20}, {4, 3, 3, 3}, {1, 1, 1, 1}, 3},             // 400 pixels: groups of 3 (3 + 2)
      {{9, 4, 12, 12}, {5, 4, 1, 1}, {1, 1, 0, 0}, 8},             // 1x1, 144 pixels: 8 + 1
      {{7, 6, 9, 9}, {4, 6, 3, 3}, {2, 2, 1, 1}, 7},               // stride 2, 25 pixels: one group of all 7
      {{13, 4, 10, 10}, {6, 2, 3, 3}, {1, 1, 1, 1, 1, 1, 2}, 11},  // channel groups 2: 11 + 2
      {{3, 2, 40, 40}, {3, 2, 3, 3}, {1, 1, 1, 1}, 1},             // 1600 pixels: one image per group
  };
  for (const Case& c : cases) {
    const auto g = conv2d_geometry("test", c.x, c.w, c.p);
    EXPECT_EQ(::fovea::detail::conv2d_filter_group(g), c.groups_of) << c.x.str();
    const Tensor x = random_tensor(c.x, 1);
    const Shape ys = conv2d_output_shape(c.x, c.w, c.p);
    const Tensor dy = random_tensor(ys, 2), start = random_tensor(c.w, 3);
    const auto xv = x.to_vector(), dv = dy.to_vector(), sv = start.to_vector();
    const std::int64_t cg = g.group_in(), kg = g.group_out();
    std::vector<double> want(static_cast<std::size_t>(c.w.numel()));
    for (std::int64_t k = 0; k < g.K; ++k)
      for (std::int64_t ci = 0; ci < cg; ++ci)
        for (std::int64_t r = 0; r < g.R; ++r)
          for (std::int64_t s = 0; s < g.S; ++s) {
            double sum = 0;
            const std::int64_t cin = (k / kg) * cg + ci;
            for (std::int64_t n = 0; n < g.N; ++n)
              for (std::int64_t oh = 0; oh < g.P; ++oh)
                for (std::int64_t ow = 0; ow < g.Q; ++ow) {
                  const std::int64_t ih = oh * c.p.stride_h - c.p.pad_h + r,
                                     iw = ow * c.p.stride_w - c.p.pad_w + s;
                  if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
                  sum += static_cast<double>(dv[((n * g.K + k) * g.P + oh) * g.Q + ow]) *
                         xv[((n * g.C + cin) * g.H + ih) * g.W + iw];
                }
            want[((k * cg + ci) * g.R + r) * g.S + s] = sum;
          }
    Tensor dw = full(c.w, std::numeric_limits<float>::quiet_NaN()), acc = start.clone();
    conv2d_backward_filter(x, dy, dw, c.p);
    conv2d_backward_filter(x, dy, acc, c.p, /*accumulate=*/true);
    std::vector<double> want_acc(want);
    for (std::size_t i = 0; i < want.size(); ++i) want_acc[i] += sv[i];
    const double tol = 2e-6 * std::sqrt(static_cast<double>(g.N * g.P * g.Q));
    EXPECT_TRUE(all_close("backward filter " + c.x.str(), dw.to_vector(), want, {tol, 1e-5}));
    EXPECT_TRUE(
        all_close("backward filter, accumulate " + c.x.str(), acc.to_vector(), want_acc, {tol, 1e-5}));
  }
}

// Sets the CPU twin's same-convolution path for a scope.
class ScopedCpuConvPath {
 public:
  explicit ScopedCpuConvPath(CpuConvPath path) : before_(cpu_conv_path()) { set_cpu_conv_path(path); }
  ScopedCpuConvPath(const ScopedCpuConvPath&) = delete;
  ScopedCpuConvPath& operator=(const ScopedCpuConvPath&) = delete;
  ~ScopedCpuConvPath() { set_cpu_conv_path(before_); }

 private:
  CpuConvPath before_;
};

// The input gradient of a same convolution in double: dx[n, c, ih, iw] = sum over k, r, s of
// dy[n, k, ih + pad_h - r, iw + pad_w - s] w[k, c, r, s] (stride 1, one group).
std::vector<double> same_conv_input_grad(const std::vector<float>& dy, const std::vector<float>& w,
                                         const Shape& xs, const Shape& ws) {
  const std::int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3], K = ws[0], R = ws[2], S = ws[3];
  const std::int64_t ph = (R - 1) / 2, pw = (S - 1) / 2;
  std::vector<double> dx(static_cast<std::size_t>(xs.numel()));
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t ih = 0; ih < H; ++ih)
        for (std::int64_t iw = 0; iw < W; ++iw) {
          double acc = 0;
          for (std::int64_t k = 0; k < K; ++k)
            for (std::int64_t r = 0; r < R; ++r)
              for (std::int64_t s = 0; s < S; ++s) {
                const std::int64_t oh = ih + ph - r, ow = iw + pw - s;
                if (oh < 0 || oh >= H || ow < 0 || ow >= W) continue;
                acc += static_cast<double>(dy[((n * K + k) * H + oh) * W + ow]) *
                       w[((k * C + c) * R + r) * S + s];
              }
          dx[((n * C + c) * H + ih) * W + iw] = acc;
        }
  return dx;
}

// The weight gradient of a same convolution in double: dw[k, c, r, s] = sum over n, oh, ow of
// dy[n, k, oh, ow] x[n, c, oh - pad_h + r, ow - pad_w + s].
std::vector<double> same_conv_weight_grad(const std::vector<float>& x, const std::vector<float>& dy,
                                          const Shape& xs, const Shape& ws) {
  const std::int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3], K = ws[0], R = ws[2], S = ws[3];
  const std::int64_t ph = (R - 1) / 2, pw = (S - 1) / 2;
  std::vector<double> dw(static_cast<std::size_t>(ws.numel()));
  for (std::int64_t k = 0; k < K; ++k)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t r = 0; r < R; ++r)
        for (std::int64_t s = 0; s < S; ++s) {
          double acc = 0;
          for (std::int64_t n = 0; n < N; ++n)
            for (std::int64_t oh = 0; oh < H; ++oh)
              for (std::int64_t ow = 0; ow < W; ++ow) {
                const std::int64_t ih = oh - ph + r, iw = ow - pw + s;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                acc += static_cast<double>(dy[((n * K + k) * H + oh) * W + ow]) *
                       x[((n * C + c) * H + ih) * W + iw];
              }
          dw[((k * C + c) * R + r) * S + s] = acc;
        }
  return dw;
}

struct SameConvCase {
  Shape x, w;
};
// Tiny, one pixel, a partial last tile with out channels not a multiple of any tile's 4 or 8, a 5x5
// and a 1x3 kernel (pad 2x2, 0x1), many input channels, an image narrower than the kernel.
const std::vector<SameConvCase>& same_conv_cases() {
  static const std::vector<SameConvCase> cases = {
      {{2, 3, 7, 5}, {5, 3, 3, 3}}, {{1, 1, 1, 1}, {1, 1, 3, 3}}, {{3, 16, 33, 33}, {9, 16, 3, 3}},
      {{2, 5, 6, 9}, {4, 5, 5, 5}}, {{2, 4, 8, 6}, {3, 4, 1, 3}}, {{1, 67, 20, 20}, {17, 67, 3, 3}},
      {{2, 2, 3, 2}, {11, 2, 5, 5}}};
  return cases;
}

const char* isa_name(::fovea::detail::ConvDirectIsa isa) {
  return ::fovea::detail::conv_direct_isa_name(isa);
}

// Every variant of the direct kernel this CPU runs, forward (with bias) and input gradient, against
// double loops; variants it cannot run are named in the output.
TEST(Conv2dDirect, EveryVariantMatchesADoubleLoop) {
  using ::fovea::detail::ConvDirectIsa;
  for (ConvDirectIsa isa : {ConvDirectIsa::generic, ConvDirectIsa::avx2, ConvDirectIsa::avx512}) {
    if (!::fovea::detail::conv_direct_supported(isa)) {
      std::printf("[ note     ] this CPU cannot run the %s variant: not tested here\n", isa_name(isa));
      continue;
    }
    for (const SameConvCase& c : same_conv_cases()) {
      SCOPED_TRACE(std::string(isa_name(isa)) + " " + c.x.str() + " " + c.w.str());
      const std::int64_t K = c.w[0];
      const Shape ys{c.x[0], K, c.x[2], c.x[3]};
      const Conv2dParams p{1, 1, static_cast<int>((c.w[2] - 1) / 2), static_cast<int>((c.w[3] - 1) / 2)};
      ASSERT_TRUE(::fovea::detail::conv_direct_applies(c.w[2], c.w[3], 1, 1, p.pad_h, p.pad_w, 1, 1, 1));
      const auto x = random_values(c.x.numel(), InputKind::normal, 1);
      const auto w = random_values(c.w.numel(), InputKind::normal, 2);
      const auto b = random_values(K, InputKind::normal, 3);
      const auto dy = random_values(ys.numel(), InputKind::normal, 4);
      std::vector<float> y(static_cast<std::size_t>(ys.numel()), std::numeric_limits<float>::quiet_NaN());
      std::vector<float> dx(static_cast<std::size_t>(c.x.numel()), std::numeric_limits<float>::quiet_NaN());
      const ::fovea::detail::ConvDirectShape fwd{c.x[1], K, c.x[2], c.x[3], c.w[2], c.w[3]};
      const ::fovea::detail::ConvDirectShape adj{K, c.x[1], c.x[2], c.x[3], c.w[2], c.w[3]};
      ::fovea::detail::conv_direct(x.data(), c.x[0], fwd, w.data(), false, b.data(), y.data(), isa);
      ::fovea::detail::conv_direct(dy.data(), c.x[0], adj, w.data(), true, nullptr, dx.data(), isa);
      const auto want_y =
          conv2d_reference(p)({to_double(x), to_double(w), to_double(b)}, {c.x, c.w, Shape{K}});
      const double root = std::sqrt(static_cast<double>(std::max(c.x[1], K) * c.w[2] * c.w[3]));
      EXPECT_TRUE(all_close("direct forward", y, want_y, {2e-6 * root, 1e-5}));
      EXPECT_TRUE(
          all_close("direct input gradient", dx, same_conv_input_grad(dy, w, c.x, c.w), {2e-6 * root, 1e-5}));
      if (c.w[2] != 3 || c.w[3] != 3) continue;  // the weight gradient's kernel: 3x3 only
      std::vector<float> dw(static_cast<std::size_t>(c.w.numel()), std::numeric_limits<float>::quiet_NaN());
      ::fovea::detail::conv_direct_filter(x.data(), dy.data(), c.x[0], fwd, dw.data(), false, isa);
      const auto want_dw = same_conv_weight_grad(x, dy, c.x, c.w);
      const double filter_tol = 2e-6 * std::sqrt(static_cast<double>(c.x[0] * c.x[2] * c.x[3]));
      EXPECT_TRUE(all_close("direct weight gradient", dw, want_dw, {filter_tol, 1e-5}));
      std::vector<float> acc = w;  // accumulated onto the weights themselves
      ::fovea::detail::conv_direct_filter(x.data(), dy.data(), c.x[0], fwd, acc.data(), true, isa);
      std::vector<double> want_acc(want_dw);
      for (std::size_t i = 0; i < want_acc.size(); ++i) want_acc[i] += w[i];
      EXPECT_TRUE(all_close("direct weight gradient, accumulated", acc, want_acc, {filter_tol, 1e-5}));
    }
  }
}

// The AVX2 + FMA and AVX-512 variants run the same chains of fused multiply-adds per output, in the
// forward and the weight-gradient kernel: the same bits. And a variant's result does not depend on
// the thread count.
TEST(Conv2dDirect, VariantsWithFmaAgreeBitwiseAndThreadsDoNotMatter) {
  using ::fovea::detail::ConvDirectIsa;
  const SameConvCase c{{5, 16, 33, 31}, {13, 16, 3, 3}};
  const ::fovea::detail::ConvDirectShape s{16, 13, 33, 31, 3, 3};
  const auto x = random_values(c.x.numel(), InputKind::normal, 1);
  const auto w = random_values(c.w.numel(), InputKind::normal, 2);
  const auto run = [&](ConvDirectIsa isa, int threads) {
    const int before = cpu_threads();
    set_cpu_threads(threads);
    std::vector<float> y(static_cast<std::size_t>(5 * 13 * 33 * 31));
    ::fovea::detail::conv_direct(x.data(), 5, s, w.data(), false, nullptr, y.data(), isa);
    set_cpu_threads(before);
    return y;
  };
  const auto dy = random_values(5 * 13 * 33 * 31, InputKind::normal, 3);
  const auto filter = [&](ConvDirectIsa isa, int threads) {
    const int before = cpu_threads();
    set_cpu_threads(threads);
    std::vector<float> dw(static_cast<std::size_t>(c.w.numel()));
    ::fovea::detail::conv_direct_filter(x.data(), dy.data(), 5, s, dw.data(), false, isa);
    set_cpu_threads(before);
    return dw;
  };
  const ConvDirectIsa best = ::fovea::detail::conv_direct_best_isa();
  EXPECT_EQ(run(best, 1), run(best, 3));
  EXPECT_EQ(filter(best, 1), filter(best, 3));
  if (!::fovea::detail::conv_direct_supported(ConvDirectIsa::avx512))
    GTEST_SKIP() << "this CPU has no AVX-512: the AVX2 and AVX-512 variants cannot be compared here";
  EXPECT_EQ(run(ConvDirectIsa::avx2, 2), run(ConvDirectIsa::avx512, 2));
  EXPECT_EQ(filter(ConvDirectIsa::avx2, 2), filter(ConvDirectIsa::avx512, 2));
}

// Through conv2d_forward / conv2d_backward_data: FOVEA_CPU_CONV's three settings pick the paths as
// documented, and the direct and GEMM paths agree to rounding.
TEST(Conv2dDirect, SettingPicksThePathAndPathsAgree) {
  using ::fovea::detail::conv2d_uses_direct;
  const Conv2dParams same{1, 1, 1, 1};
  const auto geometry = [&](Shape x, Shape w) { return conv2d_geometry("test", x, w, same); };
  {
    ScopedCpuConvPath gemm(CpuConvPath::gemm);
    EXPECT_FALSE(conv2d_uses_direct(geometry({2, 16, 64, 64}, {16, 16, 3, 3}), false));
  }
  {
    ScopedCpuConvPath direct(CpuConvPath::direct);
    EXPECT_TRUE(conv2d_uses_direct(geometry({2, 128, 8, 8}, {128, 128, 3, 3}), false));
    // not same convolutions: stride 2, a 1x1 kernel, an even kernel, groups, dilation
    EXPECT_FALSE(conv2d_uses_direct(conv2d_geometry("t", {1, 4, 9, 9}, {4, 4, 3, 3}, {2, 2, 1, 1}), false));
    EXPECT_FALSE(conv2d_uses_direct(conv2d_geometry("t", {1, 4, 9, 9}, {4, 4, 1, 1}, {1, 1, 0, 0}), false));
    EXPECT_FALSE(conv2d_uses_direct(conv2d_geometry("t", {1, 4, 9, 9}, {4, 4, 2, 2}, {1, 1, 1, 1}), false));
    EXPECT_FALSE(
        conv2d_uses_direct(conv2d_geometry("t", {1, 4, 9, 9}, {4, 2, 3, 3}, {1, 1, 1, 1, 1, 1, 2}), false));
    EXPECT_FALSE(
        conv2d_uses_direct(conv2d_geometry("t", {1, 4, 9, 9}, {4, 4, 3, 3}, {1, 1, 2, 2, 2, 2}), false));
    // the weight gradient: 3x3 only
    EXPECT_TRUE(::fovea::detail::conv2d_uses_direct_filter(geometry({2, 128, 8, 8}, {128, 128, 3, 3})));
    EXPECT_FALSE(::fovea::detail::conv2d_uses_direct_filter(
        conv2d_geometry("t", {1, 4, 9, 9}, {4, 4, 5, 5}, {1, 1, 2, 2})));
  }
  {
    ScopedCpuConvPath automatic(CpuConvPath::automatic);
    const std::int64_t max_in = ::fovea::detail::conv_direct_max_in(::fovea::detail::conv_direct_best_isa());
    // the study network's layer1 (16 channels at 64 x 64) wherever AVX2 runs; 8 x 8 never
    EXPECT_EQ(conv2d_uses_direct(geometry({2, 16, 64, 64}, {16, 16, 3, 3}), false), max_in >= 16);
    EXPECT_FALSE(conv2d_uses_direct(geometry({2, 16, 8, 8}, {16, 16, 3, 3}), false));
    // the input gradient reads the output channels: 3 of them (the stem) stay with the GEMM
    EXPECT_FALSE(conv2d_uses_direct(geometry({2, 3, 64, 64}, {16, 3, 3, 3}), true));
    EXPECT_FALSE(conv2d_uses_direct(geometry({2, 256, 32, 32}, {256, 256, 3, 3}), false));
    // the weight gradient: from 8 x 8 and up to 256 input channels wherever AVX2 runs
    const bool vectors = ::fovea::detail::conv_direct_best_isa() != ::fovea::detail::ConvDirectIsa::generic;
    EXPECT_EQ(::fovea::detail::conv2d_uses_direct_filter(geometry({2, 128, 8, 8}, {128, 128, 3, 3})),
              vectors);
    EXPECT_FALSE(::fovea::detail::conv2d_uses_direct_filter(geometry({2, 16, 4, 4}, {16, 16, 3, 3})));
    EXPECT_FALSE(::fovea::detail::conv2d_uses_direct_filter(geometry({2, 512, 8, 8}, {512, 512, 3, 3})));
  }
  const Tensor x = random_tensor({3, 16, 20, 18}, 1), w = random_tensor({12, 16, 3, 3}, 2),
               b = random_tensor({12}, 3);
  const Tensor dy = random_tensor({3, 12, 20, 18}, 4);
  std::vector<float> y[2], dx[2], dw[2];
  for (int i = 0; i < 2; ++i) {
    ScopedCpuConvPath path(i == 0 ? CpuConvPath::gemm : CpuConvPath::direct);
    Tensor yt(Shape{3, 12, 20, 18}), dxt(x.shape()), dwt(w.shape());
    conv2d_forward(x, w, b, yt, same);
    conv2d_backward_data(dy, w, dxt, same);
    conv2d_backward_filter(x, dy, dwt, same);
    y[i] = yt.to_vector();
    dx[i] = dxt.to_vector();
    dw[i] = dwt.to_vector();
  }
  EXPECT_TRUE(all_close("forward direct vs gemm", y[1], to_double(y[0]), {1e-5, 1e-5}));
  EXPECT_TRUE(all_close("input gradient direct vs gemm", dx[1], to_double(dx[0]), {1e-5, 1e-5}));
  EXPECT_TRUE(all_close("weight gradient direct vs gemm", dw[1], to_double(dw[0]), {1e-4, 1e-5}));
}

// The weight gradient's images go in chunks of at most 64 MiB of planes: 31 images of 64 to 64
// channels at 64 x 64 (about 2.2 MB each with the AVX2 or AVX-512 tiling) take two chunks, and the
// result matches the GEMM path.
TEST(Conv2dDirect, WeightGradientOverSeveralChunksMatchesGemm) {
  const Tensor x = random_tensor({31, 64, 64, 64}, 1), dy = random_tensor({31, 64, 64, 64}, 2);
  Tensor dw[2] = {Tensor(Shape{64, 64, 3, 3}), Tensor(Shape{64, 64, 3, 3})};
  for (int i = 0; i < 2; ++i) {
    ScopedCpuConvPath path(i == 0 ? CpuConvPath::gemm : CpuConvPath::direct);
    conv2d_backward_filter(x, dy, dw[i], {1, 1, 1, 1});
  }
  // |dw| is about sqrt(31 * 4096) = 356; float sums of 127k terms differ by a few 1e-4
  EXPECT_TRUE(all_close("chunked weight gradient direct vs gemm", dw[1].to_vector(),
                        to_double(dw[0].to_vector()), {2e-3, 1e-5}));
}

// The weight gradient zeroes its per-thread scratch only when the layout changes (its zeros stay in
// place between calls of one layout). A layout reused after another one whose plane interiors lie
// on its borders, and a layout reused with new data, must give the bits of a thread whose scratch
// is fresh, and the GEMM path's values.
TEST(Conv2dDirect, WeightGradientScratchKeepsItsZerosAcrossLayouts) {
  const Shape xa{3, 16, 12, 10}, ya{3, 16, 12, 10}, xb{3, 8, 9, 15}, yb{3, 24, 9, 15};
  const Tensor a1 = random_tensor(xa, 1), da1 = random_tensor(ya, 2), a2 = random_tensor(xa, 3),
               da2 = random_tensor(ya, 4), b = random_tensor(xb, 5), db = random_tensor(yb, 6);
  ScopedCpuConvPath path(CpuConvPath::direct);
  auto filter = [](const Tensor& x, const Tensor& dy) {
    Tensor dw(Shape{dy.shape()[1], x.shape()[1], 3, 3});
    conv2d_backward_filter(x, dy, dw, {1, 1, 1, 1});
    return dw.to_vector();
  };
  std::vector<float> fresh;
  std::thread([&] {
    ScopedCpuConvPath inner(CpuConvPath::direct);
    fresh = filter(a2, da2);
  }).join();
  filter(a1, da1);
  EXPECT_EQ(filter(a2, da2), fresh) << "same layout, new data";
  filter(b, db);
  EXPECT_EQ(filter(a2, da2), fresh) << "after another layout";
  Tensor gemm(Shape{16, 16, 3, 3});
  {
    ScopedCpuConvPath g(CpuConvPath::gemm);
    conv2d_backward_filter(a2, da2, gemm, {1, 1, 1, 1});
  }
  EXPECT_TRUE(all_close("direct vs gemm", fresh, to_double(gemm.to_vector()), {1e-4, 1e-5}));
}

TEST(ConvLinear, DefaultViewMeansNoBias) {
  const Conv2dParams p{1, 1, 1, 1};
  Tensor x = random_tensor({2, 3, 5, 5}, 1), w = random_tensor({4, 3, 3, 3}, 2), none(Shape{0});
  Tensor y1(Shape{2, 4, 5, 5}), y2(Shape{2, 4, 5, 5});
  conv2d_forward(x, w, CView(), y1, p);
  conv2d_forward(x, w, none, y2, p);
  EXPECT_EQ(y1.to_vector(), y2.to_vector());
  Tensor a = random_tensor({3, 7}, 3), lw = random_tensor({5, 7}, 4), z1(Shape{3, 5}), z2(Shape{3, 5});
  linear_forward(a, lw, CView(), z1);
  linear_forward(a, lw, none, z2);
  EXPECT_EQ(z1.to_vector(), z2.to_vector());
}

TEST(Linear, ShapeMismatchNamesBothShapes) {
  Tensor x = random_tensor({3, 67}, 1), w = random_tensor({5, 66}, 2), y(Shape{3, 5});
  const std::string msg = error_of([&] { linear_forward(x, w, CView(), y); });
  EXPECT_NE(msg.find("(3, 67)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(5, 66)"), std::string::npos) << msg;
  Tensor w2 = random_tensor({5, 67}, 3), y2(Shape{3, 4});
  const std::string msg2 = error_of([&] { linear_forward(x, w2, CView(), y2); });
  EXPECT_NE(msg2.find("(3, 4)"), std::string::npos) << msg2;
  EXPECT_NE(msg2.find("(5, 67)"), std::string::npos) << msg2;
  Tensor x4 = random_tensor({3, 67, 2, 1}, 4);  // 134 features per sample, weight wants 67
  EXPECT_NE(error_of([&] { linear_forward(x4, w2, CView(), Tensor(Shape{3, 5})); }).find("(3, 67, 2, 1)"),
            std::string::npos);
}

TEST(Linear, BackwardWeightAccumulates) {
  Tensor x = random_tensor({7, 33}, 1), dy = random_tensor({7, 5}, 2), once(Shape{5, 33}), twice(Shape{5, 33});
  linear_backward_weight(x, dy, once);
  linear_backward_weight(x, dy, twice);
  linear_backward_weight(x, dy, twice, /*accumulate=*/true);
  const auto a = once.to_vector(), b = twice.to_vector();
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], 2 * a[i], 1e-5 * (1 + std::fabs(a[i])));
}

}  // namespace
}  // namespace fovea::testing
