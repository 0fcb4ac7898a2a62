// Aligned text tables for the CLI's default output: Table for a whole answer at once,
// StreamingTable for rows that must be printed as they arrive (events --follow). Cells hold text
// from the service (host and workload names, commands): whatever a bad peer managed to put there,
// a cell prints as one line of printable ASCII (SafeCell), so it cannot move the cursor, clear
// the screen or break the columns.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace tcpscope::cli {

// `cell` with every byte outside printable ASCII (controls, DEL, UTF-8) as \xNN and a
// backslash as \\, so the escape is unambiguous; printable text is unchanged.
std::string SafeCell(std::string cell);

class Table {
 public:
  explicit Table(std::vector<std::string> header);
  void AddRow(std::vector<std::string> row);
  size_t rows() const { return rows_.size() - 1; }  // not counting the header
  // Columns padded to their widest cell, two spaces apart.
  void Print(std::ostream& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// Prints each row at once. A column starts as wide as its header or its `min_widths` entry and
// only grows, so rows stay aligned until a wider cell arrives.
class StreamingTable {
 public:
  StreamingTable(std::vector<std::string> header, std::vector<size_t> min_widths);
  void PrintHeader(std::ostream& out);
  void PrintRow(std::ostream& out, const std::vector<std::string>& row);

 private:
  std::vector<std::string> header_;
  std::vector<size_t> widths_;
};

}  // namespace tcpscope::cli
