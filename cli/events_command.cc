// Without --follow the stream has the --timeout deadline. With --follow it has none; a helper
// thread instead ends it on SIGTERM/SIGINT, or when the channel is still not connected after
// --timeout (so an unreachable service is reported instead of waited for).
#include "cli/events_command.h"

#include <signal.h>

#include <atomic>
#include <optional>
#include <thread>

#include "absl/time/clock.h"
#include "cli/command_line.h"
#include "cli/event_format.h"
#include "cli/json_output.h"
#include "cli/partial_answer.h"
#include "cli/rpc_failure.h"
#include "cli/table.h"
#include "grpcpp/client_context.h"
#include "tcpscope/v1/observer.grpc.pb.h"

namespace tcpscope::cli {
namespace {

// What ended a followed stream from our side.
struct FollowState {
  std::atomic<bool> done{false};         // the read loop is over: the helper may stop
  std::atomic<bool> received{false};     // a response arrived, so the service was reached
  std::atomic<bool> connected{false};    // the channel was seen connected
  std::atomic<bool> interrupted{false};  // SIGTERM or SIGINT
  std::atomic<bool> connect_timeout{false};
};

// Waits for a shutdown signal in 100 ms slices until the read loop is done, and notes whether
// the channel connected.
void WatchFollowedStream(grpc::Channel& channel, grpc::ClientContext& context,
                         absl::Duration connect_timeout, FollowState& state) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  const absl::Time connect_deadline = absl::Now() + connect_timeout;
  bool connect_checked = false;
  while (!state.done) {
    const timespec slice = absl::ToTimespec(absl::Milliseconds(100));
    const int signal_number = sigtimedwait(&signals, nullptr, &slice);
    if (signal_number == SIGTERM || signal_number == SIGINT) {
      state.interrupted = true;
      context.TryCancel();
      return;
    }
    if (channel.GetState(false) == GRPC_CHANNEL_READY) state.connected = true;
    if (!connect_checked && absl::Now() >= connect_deadline) {
      connect_checked = true;
      if (!state.received && channel.GetState(false) != GRPC_CHANNEL_READY) {
        state.connect_timeout = true;
        context.TryCancel();
      }
    }
  }
}

}  // namespace

int RunEvents(const std::shared_ptr<grpc::Channel>& channel, const CommonOptions& options,
              const v1::GetEventsRequest& request, std::ostream& out, std::ostream& err) {
  auto stub = v1::Observer::NewStub(channel);
  grpc::ClientContext context;
  const bool follow = request.follow();
  if (!follow) context.set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
  AddToken(options, context);
  // The helper starts first: creating the reader already blocks until the call has a
  // connection to go out on.
  FollowState state;
  std::thread helper;
  if (follow) {
    helper = std::thread(WatchFollowedStream, std::ref(*channel), std::ref(context),
                         options.timeout, std::ref(state));
  }
  std::unique_ptr<grpc::ClientReader<v1::GetEventsResponse>> reader =
      stub->GetEvents(&context, request);

  const bool json = options.format == OutputFormat::kJson;
  const absl::TimeZone zone = absl::LocalTimeZone();
  // A history alone is printed as one table once complete (fully aligned); a followed stream
  // row by row.
  Table table(EventHeader());
  StreamingTable stream_table(EventHeader(), EventMinWidths());
  bool header_printed = false;
  bool output_closed = false;
  size_t events = 0;
  // Replicas whose events are missing: said at once when following, after the table otherwise.
  google::protobuf::RepeatedPtrField<v1::UnansweredReplica> unanswered;
  v1::GetEventsResponse response;
  while (reader->Read(&response)) {
    state.received = true;
    if (output_closed) continue;  // draining after the cancel below
    if (response.history_truncated()) {
      err << "tcpscope: history truncated: the service no longer holds every event asked for "
             "(older ones were evicted)"
          << std::endl;
    }
    if (response.missed() > 0) {
      err << "tcpscope: missed " << response.missed()
          << " events: this client read too slowly and the service dropped them" << std::endl;
    }
    for (const v1::UnansweredReplica& replica : response.unanswered_replicas()) {
      if (follow) err << DescribeUnanswered(replica) << std::endl;
      *unanswered.Add() = replica;
    }
    for (const v1::HostEvent& entry : response.events()) {
      ++events;
      if (json) {
        out << JsonLine(entry) << "\n";
      } else if (follow) {
        if (!header_printed) stream_table.PrintHeader(out);
        header_printed = true;
        stream_table.PrintRow(out, EventRow(entry, zone));
      } else {
        table.AddRow(EventRow(entry, zone));
      }
    }
    out.flush();
    if (!out) {
      // The reader of our output went away (a closed pipe): nothing left to do.
      output_closed = true;
      context.TryCancel();
    }
  }
  state.done = true;
  if (helper.joinable()) helper.join();
  const grpc::Status status = reader->Finish();

  if (!json && !follow && (status.ok() || events > 0)) {
    table.Print(out);
    out.flush();
  }
  const int partial =
      follow ? (unanswered.empty() ? kExitOk : kExitPartial) : ReportUnanswered(unanswered, err);
  if (state.interrupted || output_closed) return partial;
  if (state.connect_timeout) {
    // Reported like a call that ran out of time before connecting.
    err << DescribeRpcFailure(options.service,
                              grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "not connected"),
                              options.timeout, /*connected=*/false)
        << std::endl;
    return kExitFailed;
  }
  // A connected stream that the service or the network ended, as opposed to a refusal.
  const bool lost = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                    status.error_code() == grpc::StatusCode::CANCELLED;
  if (follow && lost && (state.received || state.connected)) {
    err << DescribeLostStream(options.service, status) << std::endl;
    return kExitFailed;
  }
  if (!status.ok()) {
    err << DescribeRpcFailure(options.service, status, options.timeout,
                              channel->GetState(false) == GRPC_CHANNEL_READY)
        << std::endl;
    return kExitFailed;
  }
  if (events == 0 && !json && !follow) err << "tcpscope: no events match" << std::endl;
  return partial;
}

}  // namespace tcpscope::cli
