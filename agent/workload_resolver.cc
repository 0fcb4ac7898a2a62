// Resolution of a cgroup to its workload, and the cache in front of it.
#include "agent/workload_resolver.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/names.h"

namespace tcpscope::agent {
namespace {

enum Field { kContainerId, kContainerName, kPodNamespace, kPod, kPodUid, kFieldCount };
constexpr const char* kFieldNames[kFieldCount] = {"container_id", "container_name", "pod_namespace",
                                                  "pod", "pod_uid"};

enum Resolution { kContainer, kNotContainer, kCgroupNotFound, kResolutionCount };
constexpr const char* kResolutionNames[kResolutionCount] = {"container", "not_container",
                                                            "cgroup_not_found"};

enum LookupResult { kFound, kNotFound, kTimeout, kError, kLookupResultCount };
constexpr const char* kLookupResultNames[kLookupResultCount] = {"found", "not_found", "timeout",
                                                                "error"};

// Which runtimes may own a container whose path names `hint`, in the order to ask them. Docker's
// containers also live in containerd (namespace moby), which answers when dockerd does not.
std::vector<v1::ContainerRuntime> CandidatesFor(v1::ContainerRuntime hint) {
  switch (hint) {
    case v1::CONTAINER_RUNTIME_DOCKER:
      return {v1::CONTAINER_RUNTIME_DOCKER, v1::CONTAINER_RUNTIME_CONTAINERD};
    case v1::CONTAINER_RUNTIME_CONTAINERD:
    case v1::CONTAINER_RUNTIME_CRIO:
    case v1::CONTAINER_RUNTIME_PODMAN:
      return {hint};
    default:
      return {v1::CONTAINER_RUNTIME_CONTAINERD, v1::CONTAINER_RUNTIME_CRIO,
              v1::CONTAINER_RUNTIME_DOCKER, v1::CONTAINER_RUNTIME_PODMAN};
  }
}

}  // namespace

struct CgroupWorkloadResolver::Runtime {
  std::unique_ptr<RuntimeClient> client;
  prometheus::Counter* lookups[kLookupResultCount];
  std::atomic<int64_t> skip_until_ns{0};  // unix nanoseconds; backoff after a timeout
};

CgroupWorkloadResolver::CgroupWorkloadResolver(std::unique_ptr<CgroupIndex> index,
                                               std::vector<std::unique_ptr<RuntimeClient>> runtimes,
                                               const WorkloadResolverOptions& options,
                                               prometheus::Registry& registry,
                                               std::function<absl::Time()> now)
    : index_(std::move(index)),
      options_(options),
      now_(std::move(now)),
      cached_gauge_(prometheus::BuildGauge()
                        .Name("tcpscope_agent_workload_cache_entries")
                        .Help("cgroups whose workload (or absence of one) the agent has cached.")
                        .Register(registry)
                        .Add({})),
      drop_logged_(new std::atomic<bool>[kFieldCount]) {
  auto& lookups = prometheus::BuildCounter()
                      .Name("tcpscope_agent_workload_lookups_total")
                      .Help("Questions to the container runtimes' APIs, by runtime and answer.")
                      .Register(registry);
  for (std::unique_ptr<RuntimeClient>& client : runtimes) {
    auto runtime = std::make_unique<Runtime>();
    for (int result = 0; result < kLookupResultCount; ++result) {
      runtime->lookups[result] = &lookups.Add(
          {{"runtime", std::string(client->name())}, {"result", kLookupResultNames[result]}});
    }
    runtime->client = std::move(client);
    runtimes_.push_back(std::move(runtime));
  }
  auto& resolutions = prometheus::BuildCounter()
                          .Name("tcpscope_agent_workload_resolutions_total")
                          .Help(
                              "cgroups resolved: to a container, to none (a host process), or "
                              "not found in the cgroup tree (gone, or made after the last walk).")
                          .Register(registry);
  for (const char* result : kResolutionNames) {
    resolutions_.push_back(&resolutions.Add({{"result", result}}));
  }
  auto& dropped = prometheus::BuildCounter()
                      .Name("tcpscope_agent_workload_names_dropped_total")
                      .Help(
                          "Workload names left empty because they break the name rule (1-253 "
                          "characters of [A-Za-z0-9._-], starting alphanumeric).")
                      .Register(registry);
  for (int field = 0; field < kFieldCount; ++field) {
    names_dropped_.push_back(&dropped.Add({{"field", kFieldNames[field]}}));
    drop_logged_[field] = false;
  }
}

CgroupWorkloadResolver::~CgroupWorkloadResolver() = default;

size_t CgroupWorkloadResolver::cached() const {
  absl::MutexLock lock(&mutex_);
  return cache_.size();
}

std::shared_ptr<const Workload> CgroupWorkloadResolver::Resolve(uint64_t cgroup_id) {
  if (cgroup_id == 0) return nullptr;
  {
    absl::MutexLock lock(&mutex_);
    while (true) {
      auto it = cache_.find(cgroup_id);
      if (it != cache_.end()) {
        if (it->second.expires > now_()) {
          ages_.splice(ages_.begin(), ages_, it->second.age);
          return it->second.workload;
        }
        ages_.erase(it->second.age);
        cache_.erase(it);
      }
      if (!in_flight_.contains(cgroup_id)) break;
      // Another caller is asking about it: wait for its answer, then read it from the cache (or,
      // if the answer was not cached or is evicted already, ask ourselves).
      auto answered = [this, cgroup_id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
        return !in_flight_.contains(cgroup_id);
      };
      mutex_.Await(absl::Condition(&answered));
    }
    in_flight_.insert(cgroup_id);
  }
  // Looked up without the lock: a slow runtime delays only the callers asking for new cgroups.
  Lookup lookup = LookUp(cgroup_id);
  absl::MutexLock lock(&mutex_);
  in_flight_.erase(cgroup_id);
  if (!lookup.cacheable) return lookup.workload;
  const absl::Time expires = lookup.final ? absl::InfiniteFuture() : now_() + options_.retry_after;
  auto [it, inserted] = cache_.try_emplace(cgroup_id);
  if (!inserted) ages_.erase(it->second.age);
  ages_.push_front(cgroup_id);
  it->second = Entry{lookup.workload, expires, ages_.begin()};
  while (cache_.size() > options_.max_cached_cgroups) {
    cache_.erase(ages_.back());
    ages_.pop_back();
  }
  cached_gauge_.Set(static_cast<double>(cache_.size()));
  return lookup.workload;
}

CgroupWorkloadResolver::Lookup CgroupWorkloadResolver::LookUp(uint64_t cgroup_id) {
  std::string path;
  switch (index_->PathOf(cgroup_id, &path)) {
    case CgroupIndex::Result::kThrottled:
      return Lookup{nullptr, false, /*cacheable=*/false};  // asked again on a later call
    case CgroupIndex::Result::kNotFound:
      resolutions_[kCgroupNotFound]->Increment();
      return Lookup{nullptr, false, true};
    case CgroupIndex::Result::kFound:
      break;
  }
  std::optional<CgroupContainer> container = ParseCgroupPath(path);
  if (!container.has_value()) {
    // A cgroup's path does not change (cgroup ids are never reused): a host cgroup stays one.
    resolutions_[kNotContainer]->Increment();
    return Lookup{nullptr, true, true};
  }
  resolutions_[kContainer]->Increment();
  Lookup lookup;
  lookup.workload = Describe(*container, &lookup.final);
  return lookup;
}

std::shared_ptr<const Workload> CgroupWorkloadResolver::Describe(const CgroupContainer& container,
                                                                 bool* final) {
  std::optional<ContainerRecord> record;
  v1::ContainerRuntime answered_by = v1::CONTAINER_RUNTIME_UNSPECIFIED;
  for (v1::ContainerRuntime candidate : CandidatesFor(container.runtime_hint)) {
    for (std::unique_ptr<Runtime>& runtime : runtimes_) {
      if (runtime->client->runtime() != candidate || !runtime->client->Present()) continue;
      const int64_t now_ns = absl::ToUnixNanos(now_());
      if (now_ns < runtime->skip_until_ns.load(std::memory_order_relaxed)) continue;
      absl::StatusOr<ContainerRecord> answer =
          runtime->client->Inspect(container.container_id, options_.runtime_timeout);
      if (answer.ok()) {
        runtime->lookups[kFound]->Increment();
        record = *std::move(answer);
        answered_by = candidate;
        break;
      }
      if (absl::IsNotFound(answer.status())) {
        runtime->lookups[kNotFound]->Increment();
      } else if (absl::IsDeadlineExceeded(answer.status())) {
        runtime->lookups[kTimeout]->Increment();
        runtime->skip_until_ns.store(absl::ToUnixNanos(now_() + options_.runtime_backoff),
                                     std::memory_order_relaxed);
        TS_LOG(WARNING) << runtime->client->name() << " did not answer within "
                        << absl::FormatDuration(options_.runtime_timeout)
                        << "; not asked again for "
                        << absl::FormatDuration(options_.runtime_backoff);
      } else {
        runtime->lookups[kError]->Increment();
      }
    }
    if (record.has_value()) break;
  }
  // Named by a runtime: final. Otherwise what the path says, until the runtimes are asked again.
  *final = record.has_value();
  auto workload = std::make_shared<Workload>();
  workload->container_id = Checked(kContainerId, container.container_id);
  workload->runtime = container.runtime_hint != v1::CONTAINER_RUNTIME_UNSPECIFIED
                          ? container.runtime_hint
                          : answered_by;
  workload->pod_uid = Checked(kPodUid, container.pod_uid);
  if (record.has_value()) {
    // A Kubernetes container is named by its name in the pod (cri-dockerd's Docker name is a
    // composite "k8s_<container>_<pod>_..." that nobody would look for).
    const std::string& name =
        record->container_name.empty() ? record->name : record->container_name;
    if (!name.empty()) workload->container_name = Checked(kContainerName, name);
    if (!record->pod_namespace.empty()) {
      workload->pod_namespace = Checked(kPodNamespace, record->pod_namespace);
    }
    if (!record->pod_name.empty()) workload->pod = Checked(kPod, record->pod_name);
    if (!record->pod_uid.empty()) workload->pod_uid = Checked(kPodUid, record->pod_uid);
  }
  return workload;
}

std::string CgroupWorkloadResolver::Checked(int field, const std::string& name) {
  if (name.empty()) return name;
  absl::Status status = ValidateName(kFieldNames[field], name);
  if (status.ok()) return name;
  names_dropped_[field]->Increment();
  if (!drop_logged_[field].exchange(true)) {
    TS_LOG(WARNING) << "dropped a workload name (" << status.message() << "): \""
                    << absl::CHexEscape(name.substr(0, 80)) << (name.size() > 80 ? "...\"" : "\"")
                    << "; further bad " << kFieldNames[field]
                    << " values are only counted (tcpscope_agent_workload_names_dropped_total)";
  }
  return "";
}

absl::StatusOr<std::unique_ptr<WorkloadResolver>> NewWorkloadResolver(
    const WorkloadResolverOptions& options, AgentMetrics& metrics) {
  CgroupIndexOptions index_options;
  absl::StatusOr<std::string> root =
      options.cgroup_root.empty() ? FindCgroup2Mount() : Cgroup2Root(options.cgroup_root);
  if (!root.ok()) return root.status();
  index_options.root = *root;
  std::vector<std::unique_ptr<RuntimeClient>> runtimes;
  if (!options.containerd_socket.empty() && !options.containerd_namespaces.empty()) {
    runtimes.push_back(
        NewContainerdClient(options.containerd_socket, options.containerd_namespaces));
  }
  if (!options.docker_socket.empty()) {
    runtimes.push_back(NewDockerApiClient(v1::CONTAINER_RUNTIME_DOCKER, options.docker_socket));
  }
  if (!options.podman_socket.empty()) {
    runtimes.push_back(NewDockerApiClient(v1::CONTAINER_RUNTIME_PODMAN, options.podman_socket));
  }
  if (!options.crio_socket.empty()) runtimes.push_back(NewCrioClient(options.crio_socket));
  std::string present;
  for (const auto& runtime : runtimes) {
    if (runtime->Present()) absl::StrAppend(&present, present.empty() ? "" : ", ", runtime->name());
  }
  TS_LOG(INFO) << "workloads: cgroups under " << index_options.root << "; runtime sockets found: "
               << (present.empty() ? "none (containers are named by id only)" : present);
  return std::make_unique<CgroupWorkloadResolver>(
      std::make_unique<CgroupIndex>(std::move(index_options)), std::move(runtimes), options,
      *metrics.registry);
}

}  // namespace tcpscope::agent
