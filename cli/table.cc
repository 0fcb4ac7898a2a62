// Column alignment for CLI tables.
#include "cli/table.h"

#include <algorithm>

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

}  // namespace

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows_) out << Line(row, widths) << "\n";
}

StreamingTable::StreamingTable(std::vector<std::string> header, std::vector<size_t> min_widths)
    : header_(std::move(header)), widths_(std::move(min_widths)) {
  widths_.resize(std::max(widths_.size(), header_.size()));
  for (size_t i = 0; i < header_.size(); ++i) widths_[i] = std::max(widths_[i], header_[i].size());
}

void StreamingTable::PrintHeader(std::ostream& out) { out << Line(header_, widths_) << "\n"; }

void StreamingTable::PrintRow(std::ostream& out, const std::vector<std::string>& row) {
  widths_.resize(std::max(widths_.size(), row.size()));
  for (size_t i = 0; i < row.size(); ++i) widths_[i] = std::max(widths_[i], row[i].size());
  out << Line(row, widths_) << "\n";
}

}  // namespace tcpscope::cli
