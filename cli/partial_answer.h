// A partial answer: a service with replicas (tcpscope-service --peers) answers for the whole
// fleet, and names the replicas whose part is missing. Printed after the answer, on stderr, one
// line per replica; the command then exits kExitPartial.
#pragma once

#include <ostream>
#include <string>

#include "google/protobuf/repeated_ptr_field.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::cli {

// "tcpscope: partial answer: replica ADDRESS did not answer (ERROR)"
std::string DescribeUnanswered(const v1::UnansweredReplica& replica);

// Prints a line per unanswered replica to `err`; returns kExitPartial when there is one, else
// kExitOk.
int ReportUnanswered(const google::protobuf::RepeatedPtrField<v1::UnansweredReplica>& replicas,
                     std::ostream& err);

}  // namespace tcpscope::cli
