// fovea/data/csv.hpp: a strict, small CSV reader and writer (RFC 4180) for label, mask and split files,
// whose errors name the file, the line and the field.
//
// Accepted: a UTF-8 byte-order mark at the start; LF or CRLF line ends (a final line end is
// optional); fields in double quotes, which may hold commas, quotes written twice ("") and line
// breaks; blank lines (skipped). Rejected with an error naming "file:line": a quote inside an
// unquoted field, text after a closing quote, an unterminated quoted field, a bare CR, a NUL byte,
// an empty or duplicate header name, and a row whose field count differs from the header's.
// Header names are matched with surrounding spaces removed (IDRiD writes "Risk of macular edema ").
#pragma once

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "fovea/core/error.hpp"
#include "fovea/io/atomic_file.hpp"

namespace fovea::data {

namespace detail {

inline std::string_view trim_spaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace detail

// A parsed CSV file: the header, the rows (each with exactly header.size() fields) and the line on
// which each row starts (1-based; the header is on line 1 unless blank lines precede it).
struct CsvTable {
  std::string source;  // the file name used in messages
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<int> lines;

  std::size_t size() const { return rows.size(); }

  // The index of the column named `name` (spaces around header names ignored), or -1.
  int column(std::string_view name) const {
    for (std::size_t c = 0; c < header.size(); ++c)
      if (detail::trim_spaces(header[c]) == name) return static_cast<int>(c);
    return -1;
  }
  bool has_columns(std::initializer_list<std::string_view> names) const {
    return std::all_of(names.begin(), names.end(), [&](std::string_view n) { return column(n) >= 0; });
  }
  // The index of column `name`, or an error naming the file and the header it has.
  int require_column(std::string_view name) const {
    const int c = column(name);
    if (c < 0) throw Error(source + ": no column '" + std::string(name) + "' in header " + header_text());
    return c;
  }
  // The header as written, comma-separated, for messages.
  std::string header_text() const {
    std::string s;
    for (std::size_t c = 0; c < header.size(); ++c) s += (c ? "," : "") + header[c];
    return "'" + s + "'";
  }
  // "file:line" of row r.
  std::string where(std::size_t row) const { return source + ":" + std::to_string(lines.at(row)); }
  // Throws fovea::Error "file:line: <message>" for row r.
  [[noreturn]] void fail(std::size_t row, const std::string& message) const {
    throw Error(where(row) + ": " + message);
  }
  // Field (row, column).
  const std::string& at(std::size_t row, int column) const {
    return rows.at(row).at(static_cast<std::size_t>(column));
  }
  // Field (row, column) as an integer in [lo, hi]; surrounding spaces allowed. Otherwise throws
  // "file:line: field 'name' is 'x', not an integer lo-hi".
  long long integer(std::size_t row, int column, long long lo, long long hi) const {
    const std::string& text = at(row, column);
    const std::string_view s = detail::trim_spaces(text);
    long long value = 0;
    const char* end = s.data() + s.size();
    const auto [ptr, ec] = std::from_chars(s.data() + (!s.empty() && s.front() == '+'), end, value);
    if (s.empty() || ec != std::errc() || ptr != end || value < lo || value > hi)
      fail(row, "field '" + std::string(detail::trim_spaces(header.at(static_cast<std::size_t>(column)))) +
                    "' is '" + text + "', not an integer " + std::to_string(lo) + "-" + std::to_string(hi));
    return value;
  }
  // Field (row, column) as a number: the whole field (surrounding spaces allowed) in decimal or
  // scientific notation, or nan, inf, -inf (as to_chars writes them). Otherwise throws
  // "file:line: field 'name' is 'x', not a number".
  double real(std::size_t row, int column) const {
    const std::string& text = at(row, column);
    const std::string_view s = detail::trim_spaces(text);
    double value = 0;
    const char* end = s.data() + s.size();
    const auto [ptr, ec] = std::from_chars(s.data() + (!s.empty() && s.front() == '+'), end, value);
    if (s.empty() || ec != std::errc() || ptr != end)
      fail(row, "field '" + std::string(detail::trim_spaces(header.at(static_cast<std::size_t>(column)))) +
                    "' is '" + text + "', not a number");
    return value;
  }
  // Throws "file: header is 'a,b', expected 'c,d'" unless the header is exactly `expected` (the
  // names joined by commas), for files fovea writes with a fixed header.
  void require_header(std::string_view expected) const {
    std::string s;
    for (std::size_t c = 0; c < header.size(); ++c) s += (c ? "," : "") + header[c];
    if (s != expected)
      throw Error(source + ": header is " + header_text() + ", expected '" + std::string(expected) + "'");
  }
  // Field (row, column), which must not be empty (after removing surrounding spaces).
  std::string nonempty(std::size_t row, int column) const {
    const std::string_view s = detail::trim_spaces(at(row, column));
    if (s.empty())
      fail(row, "field '" + std::string(detail::trim_spaces(header.at(static_cast<std::size_t>(column)))) +
                    "' is empty");
    return std::string(s);
  }
};

// parse_csv: parses `text` (the whole file) strictly, as described at the top of this file.
// `source` names the file in error messages. requires: a header line. Throws fovea::Error
// "source:line: <problem>".
inline CsvTable parse_csv(std::string_view text, std::string source) {
  CsvTable table;
  table.source = std::move(source);
  if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  const auto fail = [&](int line, const std::string& what) -> void {
    throw Error(table.source + ":" + std::to_string(line) + ": " + what);
  };

  std::size_t i = 0;
  int line = 1;
  bool have_header = false;
  while (i < text.size()) {
    const int row_line = line;
    // A blank line (LF or CRLF) is skipped.
    if (text[i] == '\n' || (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n')) {
      i += text[i] == '\r' ? 2 : 1;
      ++line;
      continue;
    }
    std::vector<std::string> fields;
    std::string field;
    bool row_done = false;
    while (!row_done) {
      field.clear();
      if (i < text.size() && text[i] == '"') {
        const int quote_line = line;
        ++i;
        for (;;) {
          if (i >= text.size())
            fail(quote_line, "quoted field " + std::to_string(fields.size() + 1) +
                                 " is not closed before the end of the file");
          const char c = text[i];
          if (c == '"') {
            if (i + 1 < text.size() && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (c == '\0') fail(line, "NUL byte in field " + std::to_string(fields.size() + 1));
          if (c == '\n') ++line;
          field += c;
          ++i;
        }
        if (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r')
          fail(line, "text after the closing quote of field " + std::to_string(fields.size() + 1) +
                         " (a quote inside a quoted field is written \"\")");
      } else {
        while (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
          if (text[i] == '"')
            fail(line, "quote inside unquoted field " + std::to_string(fields.size() + 1) +
                           " (quote the whole field and write the quote as \"\")");
          if (text[i] == '\0') fail(line, "NUL byte in field " + std::to_string(fields.size() + 1));
          field += text[i];
          ++i;
        }
      }
      fields.push_back(field);
      if (i >= text.size()) {
        row_done = true;
      } else if (text[i] == ',') {
        ++i;
      } else if (text[i] == '\n') {
        ++i;
        ++line;
        row_done = true;
      } else {  // '\r'
        if (i + 1 >= text.size() || text[i + 1] != '\n') fail(line, "bare carriage return (CR without LF)");
        i += 2;
        ++line;
        row_done = true;
      }
    }
    if (!have_header) {
      for (std::size_t c = 0; c < fields.size(); ++c) {
        const std::string_view name = detail::trim_spaces(fields[c]);
        // Trailing unnamed columns (spreadsheet exports) are allowed; other empty names are not.
        if (name.empty()) {
          const bool rest_empty =
              std::all_of(fields.begin() + static_cast<std::ptrdiff_t>(c), fields.end(),
                          [](const std::string& f) { return detail::trim_spaces(f).empty(); });
          if (!rest_empty) fail(row_line, "header column " + std::to_string(c + 1) + " has no name");
          continue;
        }
        for (std::size_t d = 0; d < c; ++d)
          if (detail::trim_spaces(fields[d]) == name)
            fail(row_line, "header names column '" + std::string(name) + "' twice");
      }
      table.header = std::move(fields);
      have_header = true;
      continue;
    }
    if (fields.size() != table.header.size())
      fail(row_line, std::to_string(fields.size()) + " fields, but the header " + table.header_text() +
                         " has " + std::to_string(table.header.size()));
    table.rows.push_back(std::move(fields));
    table.lines.push_back(row_line);
  }
  if (!have_header) throw Error(table.source + ": empty CSV file (no header line)");
  return table;
}

// read_csv: reads and parses the file at `path` (errors name the path as given).
inline CsvTable read_csv(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open CSV file: " + std::strerror(errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw Error(path.string() + ": error while reading CSV file");
  return parse_csv(buffer.str(), path.string());
}

// csv_field: `value` as one CSV field, quoted when it holds a comma, quote, CR or LF or begins or ends
// with a space.
inline std::string csv_field(std::string_view value) {
  const bool quote = value.find_first_of(",\"\r\n") != std::string_view::npos ||
                     (!value.empty() && (value.front() == ' ' || value.back() == ' '));
  if (!quote) return std::string(value);
  std::string s = "\"";
  for (char c : value) {
    if (c == '"') s += '"';
    s += c;
  }
  return s + '"';
}

// csv_row: `fields` as one CSV line (each through csv_field), without a line end.
inline std::string csv_row(std::initializer_list<std::string_view> fields) {
  std::string out;
  bool first = true;
  for (std::string_view f : fields) {
    if (!first) out += ',';
    out += csv_field(f);
    first = false;
  }
  return out;
}
inline std::string csv_row(const std::vector<std::string>& fields) {
  std::string out;
  for (std::size_t c = 0; c < fields.size(); ++c) out += (c ? "," : "") + csv_field(fields[c]);
  return out;
}

// format_csv: a header and rows as CSV text with LF line ends (parse_csv reads it back exactly).
// requires: every row has header.size() fields.
inline std::string format_csv(const std::vector<std::string>& header,
                              const std::vector<std::vector<std::string>>& rows) {
  std::string out;
  const auto append = [&](const std::vector<std::string>& fields) { out += csv_row(fields) + '\n'; };
  append(header);
  for (const auto& row : rows) {
    FOVEA_CHECK(row.size() == header.size(), "format_csv: a row of ", row.size(),
                " fields under a header of ", header.size());
    append(row);
  }
  return out;
}

// write_csv: writes format_csv(header, rows) to `path` atomically (io::write_file_atomically).
inline void write_csv(const std::filesystem::path& path, const std::vector<std::string>& header,
                      const std::vector<std::vector<std::string>>& rows) {
  io::write_file_atomically(path, std::string_view(format_csv(header, rows)));
}

}  // namespace fovea::data
