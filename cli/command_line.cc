// Our own argv walk instead of absl::ParseCommandLine: absl's parser has one flag namespace for
// the whole program, exits with status 1 on an unknown or malformed flag (we promise 2), and its
// --help lists every flag of every command. Flag values are still parsed and stored by absl.
#include "cli/command_line.h"

#include <algorithm>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/flags.h"

namespace tcpscope::cli {
namespace {

struct FlagUsage {
  absl::string_view name;
  absl::string_view value;  // placeholder in help, e.g. "HOST"; empty for a boolean flag
  bool show_default = false;
  // What this command's help says about the flag, where it differs between commands; empty:
  // the flag's own help text.
  absl::string_view help = {};
};

struct CommandSpec {
  Command command;
  absl::string_view name;
  absl::string_view summary;
  absl::string_view usage;
  std::vector<FlagUsage> flags;
  absl::string_view notes;
};

const std::vector<FlagUsage>& CommonFlags() {
  static const auto* flags =
      new std::vector<FlagUsage>{{"service", "HOST:PORT", true}, {"o", "table|json", true},
                                 {"timeout", "DURATION", true},  {"tls_ca", "FILE"},
                                 {"tls_cert", "FILE"},           {"tls_key", "FILE"},
                                 {"token_file", "FILE"}};
  return *flags;
}

const std::vector<CommandSpec>& Commands() {
  static const auto* commands = new std::vector<CommandSpec>{
      {Command::kAgents,
       "agents",
       "agents known to the service: connected, last seen, source, version, events, losses",
       "tcpscope agents [-o table|json]",
       {},
       "Losses are the agent's own counts by stage (kernel: ring buffer or socket map full,\n"
       "netlink overrun; agent: dropped from its resend buffer). HEALTH is its source's:\n"
       "'events failed' while its event feed is broken (snapshots only).\n"},
      {Command::kConnections,
       "connections",
       "current connections (latest snapshots): keepalive, at risk, half-open, peer",
       "tcpscope connections [--host=H] [--state=S] [--port=P] [--address=IP|CIDR]\n"
       "                            [--keepalive=on|off] [--at_risk] [--at_risk_reason=R]\n"
       "                            [--half_open] [--half_open_reason=R] [--paired]\n"
       "                            [--namespace=NS] [--pod=POD] [--container=C] [--process=P]",
       {{"host", "HOST"},
        {"state", "STATE"},
        {"port", "PORT"},
        {"address", "IP|CIDR"},
        {"keepalive", "on|off"},
        {"at_risk", ""},
        {"at_risk_reason", "REASON"},
        {"half_open", ""},
        {"half_open_reason", "REASON", false,
         "Only half-open ends for this reason (implies --half_open): peer_closed, "
         "peer_rebooted, peer_host_down."},
        {"paired", ""},
        {"namespace", "NS"},
        {"pod", "POD"},
        {"container", "NAME|ID"},
        {"process", "PID|COMMAND"}},
       "Columns: IN STATE is how long the end has been in its state (to a snapshot interval);\n"
       "PEER is whether the service found the other end (paired, unpaired: no agent sees it or\n"
       "NAT, local: same host, ambiguous); HALF-OPEN is why this end is ESTABLISHED while its\n"
       "peer is gone; IDLE is the time since data was last sent or received; PROBES are\n"
       "keepalive probes outstanding; NEXT PROBE is when the keepalive timer fires next.\n"
       "POD is the workload of the process holding the socket: namespace/pod/container in\n"
       "Kubernetes (shop/web-0/app), runtime:name for another container (docker:redis, or\n"
       "the first 12 characters of its id), - for a host process or when not known; PROCESS\n"
       "is that process as command[pid].\n"
       "With --paired, each row is one connection: this end, then after | the peer's end,\n"
       "each with its POD and PROCESS: which workload talks to which.\n"
       "KA is keepalive (off, on, or on N out: N probes unanswered); SEND/RECV-Q is bytes sent\n"
       "but not acked / received but not read. A peer end that is gone shows its last\n"
       "state and how long ago it was lost: gone 42s ago (established).\n"
       "With no match the header alone is printed (exit 0) and a note goes to stderr.\n"
       "\n"
       "Examples:\n"
       "  tcpscope connections --at_risk\n"
       "  tcpscope connections --half_open_reason=peer_rebooted\n"
       "  tcpscope connections --paired --half_open\n"
       "  tcpscope connections --state=close_wait --host=web-1\n"
       "  tcpscope connections --address=10.0.0.0/8 --port=5432 --keepalive=off\n"
       "  tcpscope connections --namespace=shop --pod=web-0 --state=close_wait\n"
       "  tcpscope connections --paired --container=redis\n"
       "  tcpscope connections --process=postgres --half_open\n"},
      {Command::kEvents,
       "events",
       "recent events from the service's history, then (--follow) live ones",
       "tcpscope events [--last=N] [--since=WHEN] [--follow] [--host=H] [--type=K,...]\n"
       "                       [--reason=R] [--half_open_reason=R] [--port=P] [--address=IP|CIDR]\n"
       "                       [--role=client|server] [--namespace=NS] [--pod=POD]\n"
       "                       [--container=C] [--process=P]",
       {{"last", "N"},
        {"since", "WHEN"},
        {"follow", ""},
        {"host", "HOST"},
        {"type", "KIND,..."},
        {"reason", "REASON"},
        {"half_open_reason", "REASON", false,
         "Only half_open events for this reason: peer_closed, peer_rebooted, peer_host_down."},
        {"port", "PORT"},
        {"address", "IP|CIDR"},
        {"role", "client|server"},
        {"namespace", "NS"},
        {"pod", "POD"},
        {"container", "NAME|ID"},
        {"process", "PID|COMMAND"}},
       "Without --last, --since or --follow: the last 20 events. --follow alone: live events\n"
       "only. With -o json, one HostEvent object per line. Missed events (this client read too\n"
       "slowly) and a history that no longer reaches back far enough are reported on stderr.\n"
       "half_open events are the service's own findings (an end whose peer is gone): lost= is\n"
       "how long before the event the peer's end was lost; peer_process= and peer_pod= (or\n"
       "peer_container=) who held the peer's end. DETAILS end with the event's owner:\n"
       "process=command[pid], and pod=namespace/pod/container in Kubernetes or\n"
       "container=runtime:name (docker:redis) for another container.\n"
       "\n"
       "Examples:\n"
       "  tcpscope events --since=10m --type=close --reason=keepalive_timeout\n"
       "  tcpscope events --follow --type=handshake_failed --host=web-1\n"
       "  tcpscope events --last=100 --address=10.1.2.3 -o json | jq .event.close\n"
       "  tcpscope events --since=1h --half_open_reason=peer_host_down\n"
       "  tcpscope events --namespace=shop --pod=web-0 --type=handshake_failed\n"
       "  tcpscope events --follow --process=4242\n"},
      {Command::kSummary,
       "summary",
       "fleet and per-host totals: events, losses, handshakes, closes, at risk, half-open",
       "tcpscope summary [--host=H] [-o table|json]",
       {{"host", "HOST"}},
       "Totals count since the service first saw each host; connection counts are from the\n"
       "latest snapshots. With --host, that host only (no fleet block).\n"}};
  return *commands;
}

const CommandSpec& Spec(Command command) {
  for (const CommandSpec& spec : Commands()) {
    if (spec.command == command) return spec;
  }
  return Commands().front();  // unreachable: every Command has a spec
}

const CommandSpec* FindCommand(absl::string_view name) {
  for (const CommandSpec& spec : Commands()) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

const FlagUsage* FindFlagUsage(const std::vector<FlagUsage>& flags, absl::string_view name) {
  for (const FlagUsage& flag : flags) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

std::vector<const std::vector<FlagUsage>*> AllFlagLists() {
  std::vector<const std::vector<FlagUsage>*> lists = {&CommonFlags()};
  for (const CommandSpec& spec : Commands()) lists.push_back(&spec.flags);
  return lists;
}

// Any command's flag of this name.
const FlagUsage* FindAnyFlag(absl::string_view name) {
  if (const FlagUsage* flag = FindFlagUsage(CommonFlags(), name)) return flag;
  for (const CommandSpec& spec : Commands()) {
    if (const FlagUsage* flag = FindFlagUsage(spec.flags, name)) return flag;
  }
  return nullptr;
}

std::string CommandNames() {
  std::vector<absl::string_view> names;
  for (const CommandSpec& spec : Commands()) names.push_back(spec.name);
  return absl::StrJoin(names, ", ");
}

// "-o" for the one-letter flag, "--name" otherwise: how help and errors spell a flag.
std::string Spelling(absl::string_view name) {
  return absl::StrCat(name.size() == 1 ? "-" : "--", name);
}

// `text` in lines of at most kHelpWidth columns, every line but the first indented by `indent`
// (the first continues a line already that long).
constexpr size_t kHelpWidth = 100;
constexpr size_t kHelpIndent = 26;

std::string Wrap(absl::string_view text, size_t indent) {
  std::string wrapped;
  size_t column = indent;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (column > indent && column + 1 + word.size() > kHelpWidth) {
      absl::StrAppend(&wrapped, "\n", std::string(indent, ' '));
      column = indent;
    } else if (column > indent) {
      wrapped += ' ';
      ++column;
    }
    absl::StrAppend(&wrapped, word);
    column += word.size();
  }
  return wrapped;
}

std::string FlagLines(const std::vector<FlagUsage>& flags) {
  std::string lines;
  for (const FlagUsage& usage : flags) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(usage.name);
    std::string left = Spelling(usage.name);
    if (!usage.value.empty())
      absl::StrAppend(&left, usage.name.size() == 1 ? " " : "=", usage.value);
    std::string help = !usage.help.empty() ? std::string(usage.help)
                       : flag != nullptr   ? flag->Help()
                                           : "";
    if (usage.show_default && flag != nullptr) {
      absl::StrAppend(&help, " Default: ", flag->DefaultValue(), ".");
    }
    left = absl::StrCat("  ", left);
    if (left.size() + 2 > kHelpIndent) {
      absl::StrAppend(&lines, left, "\n");
      left.clear();
    }
    absl::StrAppend(&lines, left, std::string(kHelpIndent - left.size(), ' '),
                    Wrap(help, kHelpIndent), "\n");
  }
  return lines;
}

struct PendingFlag {
  std::string name;
  std::string value;
  std::string spelled;  // as the user wrote it, for messages
};

absl::Status UsageError(absl::string_view message) { return absl::InvalidArgumentError(message); }

}  // namespace

absl::string_view CommandName(Command command) { return Spec(command).name; }

std::optional<Command> CommandNamed(absl::string_view name) {
  const CommandSpec* spec = FindCommand(name);
  if (spec == nullptr) return std::nullopt;
  return spec->command;
}

std::string OverviewHelp() {
  std::string text =
      "tcpscope: command-line client of tcpscope-service (what happens to every TCP "
      "connection of the fleet).\n\n"
      "Usage: tcpscope COMMAND [flags]\n"
      "       tcpscope help COMMAND    (or tcpscope COMMAND --help)\n\n"
      "Commands:\n";
  for (const CommandSpec& spec : Commands()) {
    absl::StrAppend(&text, "  ", spec.name, std::string(14 - spec.name.size(), ' '), spec.summary,
                    "\n");
  }
  absl::StrAppend(&text, "\nCommon flags:\n", FlagLines(CommonFlags()),
                  "\nExit codes: 0 ok, 1 the service is unreachable or refused the request, "
                  "2 bad usage.\n");
  return text;
}

std::string CommandHelp(Command command) {
  const CommandSpec& spec = Spec(command);
  std::string text =
      absl::StrCat("tcpscope ", spec.name, ": ", spec.summary, ".\n\nUsage: ", spec.usage, "\n\n");
  if (!spec.flags.empty()) absl::StrAppend(&text, "Flags:\n", FlagLines(spec.flags), "\n");
  absl::StrAppend(&text, "Common flags:\n", FlagLines(CommonFlags()), "\n", spec.notes);
  if (!spec.notes.empty()) absl::StrAppend(&text, "\n");
  absl::StrAppend(&text,
                  "Exit codes: 0 ok, 1 the service is unreachable or refused the request, "
                  "2 bad usage.\n");
  return text;
}

absl::StatusOr<Invocation> ParseCommandLine(const std::vector<std::string>& args) {
  // Flags not on this line take their defaults, so parsing twice (tests do) starts afresh.
  for (const std::vector<FlagUsage>* flags : AllFlagLists()) {
    for (const FlagUsage& usage : *flags) {
      absl::CommandLineFlag* flag = absl::FindCommandLineFlag(usage.name);
      std::string ignored;
      if (flag != nullptr) flag->ParseFrom(flag->DefaultValue(), &ignored);
    }
  }
  Invocation invocation;
  std::vector<PendingFlag> pending;
  bool positional_only = false;
  bool help_word = false;
  // Kept until the whole line is read, because help wins over a mistake elsewhere on the line.
  absl::Status error;
  bool unknown_command = false;
  const auto fail = [&error](absl::string_view message) {
    if (error.ok()) error = UsageError(message);
  };
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!positional_only && arg == "--") {
      positional_only = true;
      continue;
    }
    if (!positional_only && arg.size() > 1 && arg[0] == '-') {
      absl::string_view body = arg;
      body.remove_prefix(absl::StartsWith(arg, "--") ? 2 : 1);
      std::string name(body);
      std::optional<std::string> value;
      if (const size_t eq = body.find('='); eq != absl::string_view::npos) {
        name = std::string(body.substr(0, eq));
        value = std::string(body.substr(eq + 1));
      }
      if (name == "help" || name == "h") {
        invocation.help = true;
        continue;
      }
      const FlagUsage* usage = FindAnyFlag(name);
      bool negated = false;
      if (usage == nullptr && absl::StartsWith(name, "no")) {
        const FlagUsage* positive = FindAnyFlag(absl::string_view(name).substr(2));
        if (positive != nullptr && positive->value.empty()) {
          usage = positive;
          negated = true;
        }
      }
      if (usage == nullptr) {
        fail(absl::StrCat("unknown flag ", Spelling(name)));
        continue;
      }
      const bool boolean = usage->value.empty();
      if (negated) {
        if (value.has_value()) {
          fail(absl::StrCat("--", name, " takes no value"));
          continue;
        }
        value = "false";
      } else if (!value.has_value()) {
        if (boolean) {
          value = "true";
        } else if (i + 1 < args.size()) {
          value = args[++i];
        } else {
          fail(absl::StrCat(Spelling(name), " needs a value (", Spelling(name),
                            name.size() == 1 ? " " : "=", usage->value, ")"));
          continue;
        }
      }
      pending.push_back({std::string(usage->name), *value, Spelling(name)});
      continue;
    }
    if (!invocation.command.has_value() && !help_word && arg == "help") {
      invocation.help = true;
      help_word = true;
      continue;
    }
    if (!invocation.command.has_value()) {
      const CommandSpec* spec = FindCommand(arg);
      if (spec == nullptr) {
        unknown_command = true;
        fail(absl::StrCat("unknown command '", arg, "' (commands: ", CommandNames(), ")"));
        continue;
      }
      invocation.command = spec->command;
      continue;
    }
    fail(absl::StrCat("unexpected argument '", arg, "' (", CommandName(*invocation.command),
                      " takes flags only)"));
  }
  if (invocation.help && !unknown_command) return invocation;
  if (!error.ok()) return error;
  if (!invocation.command.has_value()) {
    return UsageError(absl::StrCat("no command given (commands: ", CommandNames(), ")"));
  }
  const CommandSpec& spec = Spec(*invocation.command);
  for (const PendingFlag& flag : pending) {
    if (FindFlagUsage(spec.flags, flag.name) == nullptr &&
        FindFlagUsage(CommonFlags(), flag.name) == nullptr) {
      std::vector<absl::string_view> owners;
      for (const CommandSpec& other : Commands()) {
        if (FindFlagUsage(other.flags, flag.name) != nullptr) owners.push_back(other.name);
      }
      return UsageError(absl::StrCat(flag.spelled, " does not apply to 'tcpscope ", spec.name,
                                     "' (it is a flag of: ", absl::StrJoin(owners, ", "), ")"));
    }
    absl::CommandLineFlag* absl_flag = absl::FindCommandLineFlag(flag.name);
    if (absl_flag == nullptr) {
      return absl::InternalError(absl::StrCat("flag ", flag.name, " is not defined"));
    }
    std::string parse_error;
    if (!absl_flag->ParseFrom(flag.value, &parse_error)) {
      return UsageError(absl::StrCat(flag.spelled, "=", flag.value, ": ", parse_error));
    }
    invocation.given.insert(flag.name);
  }
  return invocation;
}

}  // namespace tcpscope::cli
