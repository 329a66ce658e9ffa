// fovea/io/svg_plot.hpp: the plots fovea's drivers write next to their CSV files, as self-contained
// SVG (no dependency, opens in any browser, diffable, embeddable in a paper draft): line charts
// (several series, linear or log y, numeric or categorical x, markers, optional error bars), heatmaps
// (a matrix with a colour bar, e.g. CKA) and a grid of panels (small multiples, e.g. one per
// corruption).
//
// The figures are a view of numbers the drivers also write as CSV / JSON; they are for looking, not
// for reading values off. Non-finite values (NaN, inf; and values <= 0 on a log axis) are gaps: a
// line breaks there and no marker is drawn.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

namespace fovea::io {

// One line of a line chart. x empty: 0, 1, 2, ... (categorical positions when the chart has
// x_labels; there, series without a line are drawn side by side around each position). err_low / err_high,
// when not empty, give an error bar [err_low[i], err_high[i]] at each point.
struct PlotSeries {
  std::string label;
  std::vector<double> x, y;
  std::vector<double> err_low, err_high;
  bool markers = true;
  bool dashed = false;
  bool line = true;  // false: markers (and error bars) only, e.g. for categories that have no order
};

struct LineChart {
  std::string title, x_label, y_label;
  std::vector<PlotSeries> series;
  std::vector<std::string> x_labels;  // categorical x: label k at x = k (drawn at every position that fits)
  bool log_y = false;
  double y_min = std::numeric_limits<double>::quiet_NaN();  // NaN: from the data
  double y_max = std::numeric_limits<double>::quiet_NaN();
  int width = 640, height = 400;
};

struct Heatmap {
  std::string title;
  std::vector<std::string> row_labels, column_labels;
  std::vector<std::vector<double>> values;  // rows x columns
  double lo = 0.0, hi = 1.0;                // the colour scale's range (values clamped to it)
  std::string scale_label;
  int cell = 0;  // cell side in px; 0: fit the matrix into about 640 px
};

namespace detail::svg {

inline std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

inline std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

// A tick label: up to 4 significant digits, exponent form for very small or large magnitudes.
inline std::string tick_text(double v) {
  char buf[32];
  if (v == 0.0) return "0";
  const double a = std::fabs(v);
  if (a >= 1e5 || a < 1e-3) std::snprintf(buf, sizeof buf, "%.1e", v);
  else std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// tab10, the palette matplotlib users recognise.
inline const char* colour(std::size_t i) {
  static const char* palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  return palette[i % 10];
}

// "Nice" linear ticks covering [lo, hi]: steps of 1, 2 or 5 times a power of ten, about `target` of them.
inline std::vector<double> linear_ticks(double lo, double hi, int target = 6) {
  if (!(hi > lo)) return {lo};
  const double e = std::floor(std::log10((hi - lo) / target)), p = std::pow(10.0, e);
  const double m = (hi - lo) / target / p, unit = m < 1.5 ? 1.0 : m < 3.5 ? 2.0 : m < 7.5 ? 5.0 : 10.0;
  const double step = unit * p;
  // tick k at k unit 10^e, computed as k unit / 10^-e for e < 0 so that 0.6 prints as 0.6
  const double scale = e < 0 ? std::pow(10.0, -e) : 1.0;
  std::vector<double> t;
  for (auto k = static_cast<long long>(std::ceil(lo / step - 1e-9));
       static_cast<double>(k) * step <= hi + 1e-9 * step; ++k)
    t.push_back(e < 0 ? static_cast<double>(k) * unit / scale : static_cast<double>(k) * step);
  return t;
}

// The axis range: the data's, padded by 5 % (a constant series gets +-1, or +-10 % of its value).
inline void padded_range(double& lo, double& hi) {
  if (!(lo < hi)) {
    const double d = lo == 0.0 ? 1.0 : 0.1 * std::fabs(lo);
    lo -= d, hi += d;
    return;
  }
  const double pad = 0.05 * (hi - lo);
  lo -= pad, hi += pad;
}

inline bool usable(double v, bool log) { return std::isfinite(v) && (!log || v > 0.0); }

// The chart's body at (0, 0) of size width x height, without the <svg> wrapper.
inline std::string line_chart_body(const LineChart& c) {
  const double w = c.width, h = c.height;
  bool legend = false;
  for (const PlotSeries& s : c.series) legend = legend || !s.label.empty();
  std::size_t longest = 0;
  for (const std::string& l : c.x_labels) longest = std::max(longest, l.size());
  const double left = 64, right = legend ? 150 : 16, top = c.title.empty() ? 14 : 30;
  // rotated category labels need about 5.5 px per character below the axis
  const double bottom = c.x_labels.empty() ? 46 : std::min(220.0, 34.0 + 5.5 * static_cast<double>(longest));
  const double pw = std::max(10.0, w - left - right), ph = std::max(10.0, h - top - bottom);
  auto xs_of = [](const PlotSeries& s, std::size_t i) {
    return s.x.empty() ? static_cast<double>(i) : s.x[i];
  };
  // on a categorical axis the series without a line sit side by side around each position
  std::vector<double> dodge(c.series.size(), 0.0);
  if (!c.x_labels.empty()) {
    std::size_t points = 0, k = 0;
    for (const PlotSeries& s : c.series) points += s.line ? 0 : 1;
    const double gap = 0.5 / static_cast<double>(std::max<std::size_t>(points, 2));
    for (std::size_t i = 0; i < c.series.size(); ++i)
      if (!c.series[i].line)
        dodge[i] = (static_cast<double>(k++) - 0.5 * static_cast<double>(points - 1)) * gap;
  }
  // ranges
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const PlotSeries& s : c.series)
    for (std::size_t i = 0; i < s.y.size(); ++i) {
      const double x = xs_of(s, i);
      if (!std::isfinite(x)) continue;
      auto take = [&](double v) {
        if (!usable(v, c.log_y)) return;
        x0 = std::min(x0, x), x1 = std::max(x1, x);
        y0 = std::min(y0, v), y1 = std::max(y1, v);
      };
      take(s.y[i]);
      if (i < s.err_low.size()) take(s.err_low[i]);
      if (i < s.err_high.size()) take(s.err_high[i]);
    }
  if (!c.x_labels.empty()) x0 = -0.5, x1 = static_cast<double>(c.x_labels.size()) - 0.5;
  const bool empty = !(x0 <= x1);
  if (empty) x0 = 0, x1 = 1, y0 = c.log_y ? 1 : 0, y1 = c.log_y ? 10 : 1;
  if (c.log_y) y0 = std::log10(y0), y1 = std::log10(y1);
  if (c.x_labels.empty()) padded_range(x0, x1);
  padded_range(y0, y1);
  if (std::isfinite(c.y_min)) y0 = c.log_y ? std::log10(c.y_min) : c.y_min;
  if (std::isfinite(c.y_max)) y1 = c.log_y ? std::log10(c.y_max) : c.y_max;
  if (!(y1 > y0)) y1 = y0 + 1;
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) { return top + ph - ((c.log_y ? std::log10(y) : y) - y0) / (y1 - y0) * ph; };
  std::string o;
  o += "<rect x=\"0\" y=\"0\" width=\"" + num(w) + "\" height=\"" + num(h) + "\" fill=\"white\"/>\n";
  if (!c.title.empty())
    o += "<text x=\"" + num(left + pw / 2) + "\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">" +
         escape(c.title) + "</text>\n";
  // grid and y ticks
  std::vector<double> yt;
  if (c.log_y) {
    // decades; within fewer than two decades also 2 and 5 (or every digit) times them
    const double decades = y1 - y0;
    const std::vector<double> mantissas = decades >= 2.0   ? std::vector<double>{1}
                                          : decades >= 0.7 ? std::vector<double>{1, 2, 5}
                                                           : std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 9};
    for (double e = std::floor(y0); e <= std::ceil(y1); e += 1.0)
      for (double m : mantissas) {
        const double v = m * std::pow(10.0, e), lv = std::log10(v);
        if (lv >= y0 - 1e-9 && lv <= y1 + 1e-9) yt.push_back(v);
      }
    if (yt.size() < 2) yt = {std::pow(10.0, y0), std::pow(10.0, y1)};
  } else {
    yt = linear_ticks(y0, y1, std::max(2, static_cast<int>(ph / 40)));
  }
  for (double v : yt) {
    const double y = py(v);
    if (y < top - 0.5 || y > top + ph + 0.5) continue;
    o += "<line class=\"grid\" x1=\"" + num(left) + "\" y1=\"" + num(y) + "\" x2=\"" + num(left + pw) +
         "\" y2=\"" + num(y) + "\" stroke=\"#e0e0e0\"/>\n";
    o += "<text class=\"ytick\" x=\"" + num(left - 6) + "\" y=\"" + num(y + 4) +
         "\" text-anchor=\"end\" font-size=\"11\">" + escape(tick_text(v)) + "</text>\n";
  }
  // x ticks
  if (!c.x_labels.empty()) {
    const std::size_t n = c.x_labels.size();
    const std::size_t every = std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(n * 12.0 / pw)));
    for (std::size_t k = 0; k < n; k += every) {
      const double x = px(static_cast<double>(k));
      o += "<text class=\"xtick\" x=\"" + num(x) + "\" y=\"" + num(top + ph + 10) +
           "\" text-anchor=\"end\" font-size=\"10\" transform=\"rotate(-60 " + num(x) + " " +
           num(top + ph + 10) + ")\">" + escape(c.x_labels[k]) + "</text>\n";
    }
  } else {
    for (double v : linear_ticks(x0, x1, std::max(2, static_cast<int>(pw / 60)))) {
      const double x = px(v);
      if (x < left - 0.5 || x > left + pw + 0.5) continue;
      o += "<line x1=\"" + num(x) + "\" y1=\"" + num(top + ph) + "\" x2=\"" + num(x) + "\" y2=\"" +
           num(top + ph + 4) + "\" stroke=\"black\"/>\n";
      o += "<text class=\"xtick\" x=\"" + num(x) + "\" y=\"" + num(top + ph + 16) +
           "\" text-anchor=\"middle\" font-size=\"11\">" + escape(tick_text(v)) + "</text>\n";
    }
  }
  o += "<rect x=\"" + num(left) + "\" y=\"" + num(top) + "\" width=\"" + num(pw) + "\" height=\"" + num(ph) +
       "\" fill=\"none\" stroke=\"black\"/>\n";
  if (!c.x_label.empty())
    o += "<text x=\"" + num(left + pw / 2) + "\" y=\"" + num(h - 8) +
         "\" text-anchor=\"middle\" font-size=\"12\">" + escape(c.x_label) + "</text>\n";
  if (!c.y_label.empty())
    o += "<text x=\"14\" y=\"" + num(top + ph / 2) +
         "\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 14 " + num(top + ph / 2) +
         ")\">" + escape(c.y_label) + "</text>\n";
  if (empty)
    o += "<text x=\"" + num(left + pw / 2) + "\" y=\"" + num(top + ph / 2) +
         "\" text-anchor=\"middle\" font-size=\"12\" fill=\"#888\">no finite values</text>\n";
  // series, clipped to the plot area
  o += "<clipPath id=\"area\"><rect x=\"" + num(left) + "\" y=\"" + num(top) + "\" width=\"" + num(pw) +
       "\" height=\"" + num(ph) + "\"/></clipPath>\n<g clip-path=\"url(#area)\">\n";
  for (std::size_t k = 0; k < c.series.size(); ++k) {
    const PlotSeries& s = c.series[k];
    const std::string col = colour(k);
    const double shift = dodge[k];
    std::string points;
    auto flush = [&] {
      if (points.empty()) return;
      o += "<polyline class=\"series\" data-series=\"" + std::to_string(k) + "\" fill=\"none\" stroke=\"" +
           col + "\" stroke-width=\"1.6\"" + (s.dashed ? " stroke-dasharray=\"5 3\"" : "") + " points=\"" +
           points + "\"/>\n";
      points.clear();
    };
    for (std::size_t i = 0; i < s.y.size(); ++i) {
      const double x = xs_of(s, i), y = s.y[i];
      if (!s.line || !std::isfinite(x) || !usable(y, c.log_y)) {
        flush();
        continue;
      }
      points += (points.empty() ? "" : " ") + num(px(x)) + "," + num(py(y));
    }
    flush();
    for (std::size_t i = 0; i < s.y.size(); ++i) {
      const double x = xs_of(s, i) + shift;
      if (!std::isfinite(x)) continue;
      if (i < s.err_low.size() && i < s.err_high.size() && usable(s.err_low[i], c.log_y) &&
          usable(s.err_high[i], c.log_y))
        o += "<line class=\"errorbar\" x1=\"" + num(px(x)) + "\" y1=\"" + num(py(s.err_low[i])) + "\" x2=\"" +
             num(px(x)) + "\" y2=\"" + num(py(s.err_high[i])) + "\" stroke=\"" + col + "\"/>\n";
      if (s.markers && usable(s.y[i], c.log_y))
        o += "<circle class=\"marker\" cx=\"" + num(px(x)) + "\" cy=\"" + num(py(s.y[i])) +
             "\" r=\"2.6\" fill=\"" + col + "\"/>\n";
    }
  }
  o += "</g>\n";
  if (legend) {
    double ly = top + 6;
    for (std::size_t k = 0; k < c.series.size(); ++k, ly += 16) {
      const double lx = left + pw + 10;
      if (c.series[k].line)
        o += "<line x1=\"" + num(lx) + "\" y1=\"" + num(ly) + "\" x2=\"" + num(lx + 18) + "\" y2=\"" +
             num(ly) + "\" stroke=\"" + colour(k) + "\" stroke-width=\"2\"" +
             (c.series[k].dashed ? " stroke-dasharray=\"5 3\"" : "") + "/>\n";
      else
        o += "<circle cx=\"" + num(lx + 9) + "\" cy=\"" + num(ly) + "\" r=\"3\" fill=\"" + colour(k) +
             "\"/>\n";
      o += "<text class=\"legend\" x=\"" + num(lx + 24) + "\" y=\"" + num(ly + 4) + "\" font-size=\"11\">" +
           escape(c.series[k].label) + "</text>\n";
    }
  }
  return o;
}

inline std::string wrap(const std::string& body, double w, double h) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(w) + "\" height=\"" + num(h) +
         "\" viewBox=\"0 0 " + num(w) + " " + num(h) + "\" font-family=\"sans-serif\">\n" + body + "</svg>\n";
}

// viridis at t in [0, 1], interpolated between 9 stops.
inline std::string viridis(double t) {
  static const double stops[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},
                                     {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                     {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
  t = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0) * 8.0;
  const int i = std::min(7, static_cast<int>(t));
  const double f = t - i;
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x",
                static_cast<int>(std::lround(stops[i][0] + f * (stops[i + 1][0] - stops[i][0]))),
                static_cast<int>(std::lround(stops[i][1] + f * (stops[i + 1][1] - stops[i][1]))),
                static_cast<int>(std::lround(stops[i][2] + f * (stops[i + 1][2] - stops[i][2]))));
  return buf;
}

}  // namespace detail::svg

// A line chart as a standalone SVG document.
inline std::string line_chart_svg(const LineChart& c) {
  return detail::svg::wrap(detail::svg::line_chart_body(c), c.width, c.height);
}

// Small multiples: the charts in a grid of `columns`, each at its own width and height (use equal
// sizes), with an optional title above.
inline std::string chart_grid_svg(const std::vector<LineChart>& charts, int columns,
                                  const std::string& title = "") {
  using detail::svg::num;
  columns = std::max(1, columns);
  const double cw = charts.empty() ? 100 : charts[0].width, ch = charts.empty() ? 100 : charts[0].height;
  const double head = title.empty() ? 0 : 30;
  const auto rows = static_cast<int>((charts.size() + static_cast<std::size_t>(columns) - 1) /
                                     static_cast<std::size_t>(columns));
  const double w = cw * std::min<double>(columns, std::max<double>(1, static_cast<double>(charts.size()))),
               h = head + ch * std::max(1, rows);
  std::string body =
      "<rect x=\"0\" y=\"0\" width=\"" + num(w) + "\" height=\"" + num(h) + "\" fill=\"white\"/>\n";
  if (!title.empty())
    body += "<text x=\"" + num(w / 2) + "\" y=\"20\" text-anchor=\"middle\" font-size=\"15\">" +
            detail::svg::escape(title) + "</text>\n";
  for (std::size_t k = 0; k < charts.size(); ++k) {
    const double x = cw * static_cast<double>(k % static_cast<std::size_t>(columns));
    const double y = head + ch * static_cast<double>(k / static_cast<std::size_t>(columns));
    std::string panel = detail::svg::line_chart_body(charts[k]);
    // each panel's clip path gets its own id
    const std::string id = "area" + std::to_string(k);
    for (std::size_t p = panel.find("id=\"area\""); p != std::string::npos; p = panel.find("id=\"area\"", p))
      panel.replace(p, 9, "id=\"" + id + "\"");
    for (std::size_t p = panel.find("url(#area)"); p != std::string::npos; p = panel.find("url(#area)", p))
      panel.replace(p, 10, "url(#" + id + ")");
    body += "<svg class=\"panel\" x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(charts[k].width) +
            "\" height=\"" + num(charts[k].height) + "\">\n" + panel + "</svg>\n";
  }
  return detail::svg::wrap(body, w, h);
}

// A heatmap with row and column labels and a colour bar (viridis over [lo, hi]); non-finite cells grey.
inline std::string heatmap_svg(const Heatmap& m) {
  using detail::svg::escape;
  using detail::svg::num;
  const std::size_t rows = m.values.size(), cols = rows == 0 ? 0 : m.values[0].size();
  const double cell =
      m.cell > 0 ? m.cell
                 : std::clamp(520.0 / static_cast<double>(std::max<std::size_t>({rows, cols, 1})), 4.0, 40.0);
  std::size_t longest = 0;
  for (const auto& l : m.row_labels) longest = std::max(longest, l.size());
  for (const auto& l : m.column_labels) longest = std::max(longest, l.size());
  const double label_px = std::min(220.0, 6.0 * static_cast<double>(longest) + 10);
  const double left = label_px, top = (m.title.empty() ? 10 : 30), gw = cell * cols, gh = cell * rows;
  const double w = std::max(left + gw + 90, 7.5 * static_cast<double>(m.title.size()) + 20),
               h = top + gh + label_px;
  const double font = std::clamp(cell * 0.8, 6.0, 11.0);
  std::string o =
      "<rect x=\"0\" y=\"0\" width=\"" + num(w) + "\" height=\"" + num(h) + "\" fill=\"white\"/>\n";
  if (!m.title.empty())
    o += "<text x=\"" + num(std::max(left + gw / 2, w / 2)) +
         "\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">" + escape(m.title) + "</text>\n";
  const double span = m.hi > m.lo ? m.hi - m.lo : 1.0;
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols && c < m.values[r].size(); ++c) {
      const double v = m.values[r][c];
      const std::string fill = std::isfinite(v) ? detail::svg::viridis((v - m.lo) / span) : "#bbbbbb";
      o += "<rect class=\"cell\" x=\"" + num(left + cell * c) + "\" y=\"" + num(top + cell * r) +
           "\" width=\"" + num(cell) + "\" height=\"" + num(cell) + "\" fill=\"" + fill + "\"><title>" +
           escape((r < m.row_labels.size() ? m.row_labels[r] : "") + " / " +
                  (c < m.column_labels.size() ? m.column_labels[c] : "") + ": " + detail::svg::tick_text(v)) +
           "</title></rect>\n";
    }
  for (std::size_t r = 0; r < rows && r < m.row_labels.size(); ++r)
    o += "<text class=\"rowlabel\" x=\"" + num(left - 4) + "\" y=\"" +
         num(top + cell * (r + 0.5) + font / 3) + "\" text-anchor=\"end\" font-size=\"" + num(font) + "\">" +
         escape(m.row_labels[r]) + "</text>\n";
  for (std::size_t c = 0; c < cols && c < m.column_labels.size(); ++c) {
    const double x = left + cell * (c + 0.5) + font / 3, y = top + gh + 4;
    o += "<text class=\"columnlabel\" x=\"" + num(x) + "\" y=\"" + num(y) +
         "\" text-anchor=\"end\" font-size=\"" + num(font) + "\" transform=\"rotate(-90 " + num(x) + " " +
         num(y) + ")\">" + escape(m.column_labels[c]) + "</text>\n";
  }
  // colour bar
  const double bx = left + gw + 20, bh = std::max(60.0, gh);
  for (int k = 0; k < 32; ++k)
    o += "<rect x=\"" + num(bx) + "\" y=\"" + num(top + bh * (31 - k) / 32.0) + "\" width=\"14\" height=\"" +
         num(bh / 32.0 + 0.5) + "\" fill=\"" + detail::svg::viridis((k + 0.5) / 32.0) + "\"/>\n";
  o += "<text x=\"" + num(bx + 18) + "\" y=\"" + num(top + 10) + "\" font-size=\"10\">" +
       escape(detail::svg::tick_text(m.hi)) + "</text>\n";
  o += "<text x=\"" + num(bx + 18) + "\" y=\"" + num(top + bh) + "\" font-size=\"10\">" +
       escape(detail::svg::tick_text(m.lo)) + "</text>\n";
  if (!m.scale_label.empty())
    o += "<text x=\"" + num(bx + 18) + "\" y=\"" + num(top + bh / 2) + "\" font-size=\"10\">" +
         escape(m.scale_label) + "</text>\n";
  return detail::svg::wrap(o, w, h);
}

}  // namespace fovea::io
