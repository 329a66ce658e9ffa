// tests/test_svg_plot.cpp: the SVG plots of io/svg_plot.hpp: well-formed documents (balanced tags,
// escaped text), nice ticks, points mapped into the plot area in the right order, gaps at
// non-finite values and at non-positive values on a log axis, error bars, legends, heatmap cells and
// colours, and unique clip-path ids in a grid of panels.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "fovea/io/svg_plot.hpp"

namespace fovea {
namespace {

using io::LineChart;
using io::PlotSeries;
const double kNaN = std::numeric_limits<double>::quiet_NaN();

// Tags balance (every <x ...> closed by </x> in order, or self-closed), and no raw '&' outside an
// entity: the document is well-formed XML as far as fovea's output goes.
::testing::AssertionResult well_formed(const std::string& svg) {
  std::vector<std::string> stack;
  for (std::size_t i = svg.find('<'); i != std::string::npos; i = svg.find('<', i + 1)) {
    const std::size_t end = svg.find('>', i);
    if (end == std::string::npos) return ::testing::AssertionFailure() << "unterminated tag at " << i;
    const std::string tag = svg.substr(i + 1, end - i - 1);
    if (tag.empty()) return ::testing::AssertionFailure() << "empty tag at " << i;
    if (tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (stack.empty() || stack.back() != name)
        return ::testing::AssertionFailure()
               << "</" << name << "> closes " << (stack.empty() ? "nothing" : stack.back());
      stack.pop_back();
    } else if (tag.back() != '/') {
      stack.push_back(tag.substr(0, tag.find_first_of(" \n")));
    }
  }
  if (!stack.empty()) return ::testing::AssertionFailure() << "<" << stack.back() << "> never closed";
  for (std::size_t i = svg.find('&'); i != std::string::npos; i = svg.find('&', i + 1)) {
    const std::string rest = svg.substr(i, 6);
    if (rest.rfind("&amp;", 0) != 0 && rest.rfind("&lt;", 0) != 0 && rest.rfind("&gt;", 0) != 0 &&
        rest.rfind("&quot;", 0) != 0)
      return ::testing::AssertionFailure() << "raw & at " << i;
  }
  return ::testing::AssertionSuccess();
}

// The points of every polyline, in order.
std::vector<std::vector<std::pair<double, double>>> polylines(const std::string& svg) {
  std::vector<std::vector<std::pair<double, double>>> out;
  const std::regex line("<polyline[^>]* points=\"([^\"]*)\"");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), line); it != std::sregex_iterator(); ++it) {
    std::vector<std::pair<double, double>> pts;
    std::istringstream in((*it)[1].str());
    std::string pair;
    while (in >> pair) {
      const std::size_t comma = pair.find(',');
      pts.emplace_back(std::stod(pair.substr(0, comma)), std::stod(pair.substr(comma + 1)));
    }
    out.push_back(pts);
  }
  return out;
}

std::size_t count(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t i = s.find(what); i != std::string::npos; i = s.find(what, i + 1)) ++n;
  return n;
}

TEST(SvgPlot, NiceTicks) {
  EXPECT_EQ(io::detail::svg::linear_ticks(0.0, 1.0), (std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1.0}));
  const std::vector<double> t = io::detail::svg::linear_ticks(-3.3, 7.1);
  ASSERT_FALSE(t.empty());
  EXPECT_DOUBLE_EQ(t.front(), -2.0);
  EXPECT_DOUBLE_EQ(t.back(), 6.0);
  for (std::size_t i = 1; i < t.size(); ++i) EXPECT_NEAR(t[i] - t[i - 1], 2.0, 1e-12);
  EXPECT_EQ(io::detail::svg::tick_text(0.25), "0.25");
  EXPECT_EQ(io::detail::svg::tick_text(2e-5), "2.0e-05");
}

TEST(SvgPlot, LineChartMapsPointsIntoThePlotArea) {
  LineChart c;
  c.title = "error <vs> severity & more";
  c.x_label = "severity";
  c.y_label = "error";
  PlotSeries s;
  s.label = "model \"a\"";
  s.x = {1, 2, 3, 4, 5};
  s.y = {0.1, 0.2, 0.3, 0.4, 0.5};
  c.series.push_back(s);
  s.label = "b";
  s.y = {0.5, 0.4, 0.3, 0.2, 0.1};
  s.dashed = true;
  c.series.push_back(s);
  const std::string svg = io::line_chart_svg(c);
  EXPECT_TRUE(well_formed(svg));
  EXPECT_NE(svg.find("error &lt;vs&gt; severity &amp; more"), std::string::npos);
  EXPECT_NE(svg.find("model &quot;a&quot;"), std::string::npos);
  const auto lines = polylines(svg);
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& pts : lines) {
    ASSERT_EQ(pts.size(), 5u);
    for (const auto& [x, y] : pts) {
      EXPECT_GT(x, 64.0);
      EXPECT_LT(x, 640.0 - 150.0);
      EXPECT_GT(y, 30.0);
      EXPECT_LT(y, 400.0 - 46.0);
    }
    for (std::size_t i = 1; i < pts.size(); ++i) EXPECT_GT(pts[i].first, pts[i - 1].first);
  }
  for (std::size_t i = 1; i < 5; ++i) {
    EXPECT_LT(lines[0][i].second, lines[0][i - 1].second) << "rising values go up (SVG y grows downwards)";
    EXPECT_GT(lines[1][i].second, lines[1][i - 1].second);
  }
  EXPECT_NEAR(lines[0][2].second, lines[1][2].second, 0.011) << "both cross at x = 3";
  EXPECT_EQ(count(svg, "class=\"marker\""), 10u);
  EXPECT_EQ(count(svg, "class=\"legend\""), 2u);
  EXPECT_EQ(count(svg, "stroke-dasharray"), 2u) << "the dashed series and its legend entry";
}

TEST(SvgPlot, GapsAtNonFiniteAndNonPositiveOnALogAxis) {
  LineChart c;
  PlotSeries s;
  s.y = {1, 2, kNaN, 4, 5, std::numeric_limits<double>::infinity(), 7};
  c.series.push_back(s);
  auto lines = polylines(io::line_chart_svg(c));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].size(), 2u);
  EXPECT_EQ(lines[1].size(), 2u);
  EXPECT_EQ(lines[2].size(), 1u);
  c.log_y = true;
  c.series[0].y = {100, 10, 0, 1, -5, 0.1};
  const std::string svg = io::line_chart_svg(c);
  EXPECT_TRUE(well_formed(svg));
  lines = polylines(svg);
  ASSERT_EQ(lines.size(), 3u);
  // on a log axis equal ratios are equal distances: 100 -> 10 as far as 1 -> 0.1
  const double d1 = lines[0][1].second - lines[0][0].second;
  ASSERT_EQ(lines[2].size(), 1u);
  const double top = lines[0][0].second, at1 = lines[1][0].second, at01 = lines[2][0].second;
  EXPECT_NEAR(at01 - at1, d1, 0.02);  // coordinates carry 2 decimals
  EXPECT_NEAR(at1 - top, 2 * d1, 0.02);
  EXPECT_EQ(count(svg, "class=\"marker\""), 4u);
  EXPECT_NE(svg.find(">100<"), std::string::npos) << "decade ticks";
  // nothing finite at all: a frame and a note, no series
  c.series[0].y = {kNaN, -1};
  const std::string none = io::line_chart_svg(c);
  EXPECT_TRUE(well_formed(none));
  EXPECT_TRUE(polylines(none).empty());
  EXPECT_NE(none.find("no finite values"), std::string::npos);
}

TEST(SvgPlot, CategoricalAxisAndErrorBars) {
  LineChart c;
  c.x_labels = {"conv1", "layer1.0", "layer1.1", "fc"};
  PlotSeries s;
  s.y = {3, 2, 5, 1};
  s.err_low = {2.5, 1.5, 4, kNaN};
  s.err_high = {3.5, 2.5, 6, 2};
  c.series.push_back(s);
  const std::string svg = io::line_chart_svg(c);
  EXPECT_TRUE(well_formed(svg));
  EXPECT_EQ(count(svg, "class=\"xtick\""), 4u);
  EXPECT_NE(svg.find(">layer1.0<"), std::string::npos);
  EXPECT_EQ(count(svg, "class=\"errorbar\""), 3u) << "no bar where an end is missing";
  EXPECT_EQ(count(svg, "class=\"legend\""), 0u) << "one unlabelled series: no legend";
}

TEST(SvgPlot, PointSeriesOnACategoricalAxisSitSideBySide) {
  LineChart c;
  c.x_labels = {"random", "simclr"};
  for (int k = 0; k < 2; ++k) {
    PlotSeries s;
    s.label = k == 0 ? "finetune" : "linear";
    s.line = false;
    s.y = {0.5, 0.6};
    c.series.push_back(s);
  }
  const std::string svg = io::line_chart_svg(c);
  EXPECT_TRUE(well_formed(svg));
  EXPECT_TRUE(polylines(svg).empty()) << "no lines between categories";
  const std::regex marker("<circle class=\"marker\" cx=\"([0-9.]+)\" cy=\"([0-9.]+)\"");
  std::vector<double> xs;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), marker); it != std::sregex_iterator(); ++it)
    xs.push_back(std::stod((*it)[1].str()));
  ASSERT_EQ(xs.size(), 4u);
  EXPECT_LT(xs[0], xs[2]) << "at the first category the first series sits left of the second";
  EXPECT_NEAR(xs[2] - xs[0], xs[3] - xs[1], 0.011) << "the same offset at every category";
  EXPECT_LT(xs[2], xs[1]) << "and both stay within their category";
}

TEST(SvgPlot, HeatmapCellsAndColours) {
  io::Heatmap m;
  m.title = "CKA";
  m.row_labels = {"a", "b"};
  m.column_labels = {"x", "y", "z"};
  m.values = {{0.0, 0.5, 1.0}, {kNaN, 2.0, -1.0}};
  const std::string svg = io::heatmap_svg(m);
  EXPECT_TRUE(well_formed(svg));
  EXPECT_EQ(count(svg, "class=\"cell\""), 6u);
  EXPECT_EQ(count(svg, "class=\"rowlabel\""), 2u);
  EXPECT_EQ(count(svg, "class=\"columnlabel\""), 3u);
  EXPECT_EQ(io::detail::svg::viridis(0.0), "#440154");
  EXPECT_EQ(io::detail::svg::viridis(1.0), "#fde725");
  EXPECT_EQ(count(svg, "fill=\"#440154\"><title>"), 2u) << "0 and the clamped -1";
  EXPECT_EQ(count(svg, "fill=\"#fde725\"><title>"), 2u) << "1 and the clamped 2";
  EXPECT_EQ(count(svg, "fill=\"#bbbbbb\"><title>"), 1u) << "NaN";
}

TEST(SvgPlot, GridGivesEachPanelItsOwnClipPath) {
  std::vector<LineChart> charts(5);
  for (std::size_t k = 0; k < charts.size(); ++k) {
    charts[k].title = "panel " + std::to_string(k);
    charts[k].width = 240, charts[k].height = 180;
    PlotSeries s;
    s.y = {1, 2, 3};
    charts[k].series.push_back(s);
  }
  const std::string svg = io::chart_grid_svg(charts, 3, "all");
  EXPECT_TRUE(well_formed(svg));
  EXPECT_EQ(count(svg, "class=\"panel\""), 5u);
  for (int k = 0; k < 5; ++k) {
    EXPECT_EQ(count(svg, "id=\"area" + std::to_string(k) + "\""), 1u);
    EXPECT_EQ(count(svg, "url(#area" + std::to_string(k) + ")"), 1u);
  }
  EXPECT_EQ(count(svg, "id=\"area\""), 0u);
  EXPECT_NE(svg.find("width=\"720.00\" height=\"390.00\""), std::string::npos)
      << "3 columns x 2 rows + title";
}

}  // namespace
}  // namespace fovea
