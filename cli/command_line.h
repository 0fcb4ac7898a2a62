// The command line of `tcpscope`: its commands, which flags each accepts, parsing argv into a
// command plus flag values (set on the ABSL_FLAGs of cli/flags.h), and per-command help.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tcpscope::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;  // the service is unreachable or refused the request
inline constexpr int kExitUsage = 2;
// The answer was printed but misses the part of a service replica that did not answer.
inline constexpr int kExitPartial = 3;

enum class Command { kAgents, kConnections, kEvents, kSummary };

struct Invocation {
  // Absent only with `help`: `tcpscope help` or `tcpscope --help` asks for the overview.
  std::optional<Command> command;
  bool help = false;
  std::set<std::string> given;  // names of the flags set on the command line

  bool Given(absl::string_view flag) const { return given.count(std::string(flag)) > 0; }
};

// Parses argv (args[0] is the program), sets the flags given and resets the others to their
// defaults. A flag may come before or after
// the command, as --name=value, --name value, -name value, and for booleans --name or
// --noname. Help (`help [COMMAND]`, `--help`, `-h`) wins over everything else on the line.
// Every error is a usage error, with a message that says what is wrong.
absl::StatusOr<Invocation> ParseCommandLine(const std::vector<std::string>& args);

absl::string_view CommandName(Command command);
// The command of this name ("events"), if there is one.
std::optional<Command> CommandNamed(absl::string_view name);
std::string OverviewHelp();
// That command's usage, its own flags, the common flags and examples.
std::string CommandHelp(Command command);

}  // namespace tcpscope::cli
