#include "cli/partial_answer.h"

#include "absl/strings/str_cat.h"
#include "cli/command_line.h"
#include "cli/table.h"

namespace tcpscope::cli {

std::string DescribeUnanswered(const v1::UnansweredReplica& replica) {
  return absl::StrCat("tcpscope: partial answer: replica ", SafeCell(replica.replica()),
                      " did not answer (", SafeCell(replica.error()), ")");
}

int ReportUnanswered(const google::protobuf::RepeatedPtrField<v1::UnansweredReplica>& replicas,
                     std::ostream& err) {
  for (const v1::UnansweredReplica& replica : replicas) {
    err << DescribeUnanswered(replica) << std::endl;
  }
  return replicas.empty() ? kExitOk : kExitPartial;
}

}  // namespace tcpscope::cli
