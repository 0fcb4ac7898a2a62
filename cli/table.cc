// Column alignment for CLI tables.
#include "cli/table.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace tcpscope::cli {
namespace {

// Cells padded to `widths`, two spaces apart; the last cell is not padded.
std::string Line(const std::vector<std::string>& row, const std::vector<size_t>& widths) {
  std::string line;
  for (size_t i = 0; i < row.size(); ++i) {
    line += row[i];
    if (i + 1 < row.size()) {
      const size_t width = i < widths.size() ? widths[i] : row[i].size();
      line.append(width - std::min(width, row[i].size()) + 2, ' ');
    }
  }
  return line;
}

std::vector<std::string> SafeRow(std::vector<std::string> row) {
  for (std::string& cell : row) cell = SafeCell(std::move(cell));
  return row;
}

}  // namespace

std::string SafeCell(std::string cell) {
  const bool safe = std::all_of(cell.begin(), cell.end(),
                                [](char c) { return c >= 0x20 && c <= 0x7e && c != '\\'; });
  if (safe) return cell;
  std::string escaped;
  for (const char c : cell) {
    if (c == '\\') {
      escaped += "\\\\";
    } else if (c >= 0x20 && c <= 0x7e) {
      escaped += c;
    } else {
      absl::StrAppendFormat(&escaped, "\\x%02x", static_cast<unsigned char>(c));
    }
  }
  return escaped;
}

Table::Table(std::vector<std::string> header) : rows_{SafeRow(std::move(header))} {}

void Table::AddRow(std::vector<std::string> row) { rows_.push_back(SafeRow(std::move(row))); }

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows_) out << Line(row, widths) << "\n";
}

StreamingTable::StreamingTable(std::vector<std::string> header, std::vector<size_t> min_widths)
    : header_(SafeRow(std::move(header))), widths_(std::move(min_widths)) {
  widths_.resize(std::max(widths_.size(), header_.size()));
  for (size_t i = 0; i < header_.size(); ++i) widths_[i] = std::max(widths_[i], header_[i].size());
}

void StreamingTable::PrintHeader(std::ostream& out) { out << Line(header_, widths_) << "\n"; }

void StreamingTable::PrintRow(std::ostream& out, const std::vector<std::string>& input) {
  const std::vector<std::string> row = SafeRow(input);
  widths_.resize(std::max(widths_.size(), row.size()));
  for (size_t i = 0; i < row.size(); ++i) widths_[i] = std::max(widths_[i], row[i].size());
  out << Line(row, widths_) << "\n";
}

}  // namespace tcpscope::cli
