// qmgr's scheduler (DESIGN §3, §4): picks messages up from incoming/ and
// maildrop/, routes each recipient (authd), hands local deliveries to
// deliverd, logs outcomes, retries with backoff, returns failures to the
// sender, and carries out the admin's queue commands. Remote recipients go
// to relayd, routed by the transport table and relayhost. The only process that
// moves files between queue folders.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "libmail/auth_lookup.hpp"
#include "libmail/delivery_protocol.hpp"
#include "libmail/event.hpp"
#include "libmail/ipc.hpp"
#include "libmail/queue.hpp"
#include "libmail/queue_control.hpp"
#include "libmail/relay_protocol.hpp"
#include "qmgr/relay_pool.hpp"

namespace facteur::qmgr {

class TransportTable;

struct Settings {
    std::string hostname;
    std::chrono::milliseconds scan_interval{10000};
    int64_t minimal_backoff = 300;  // seconds
    int64_t maximal_backoff = 4000;
    int64_t queue_lifetime = 5 * 86400;
    int64_t bounce_lifetime = 5 * 86400;
    size_t concurrency = 20;
    size_t active_limit = 2000;
    uint64_t message_size_limit = 50u << 20;
    uint64_t bounce_full_limit = 50000;  // larger originals come back as headers only
    int max_expansion_depth = 10;
    // Remote recipients: the relayhost (none: each domain's MX) unless the
    // transport table says otherwise; relayd requests in flight at once.
    std::optional<relay::Nexthop> relayhost;
    size_t relay_concurrency = 100;
    int64_t delay_warning = 4 * 3600;  // seconds; 0 = no delay warnings
};

class QueueManager {
public:
    QueueManager(event::Loop& loop, queue::Spool spool, Settings settings, auth_lookup::Client& authd,
                 ipc::AsyncClient& deliverd, RelayPool& relayd, event::WorkerPool& pool);
    ~QueueManager();
    QueueManager(const QueueManager&) = delete;
    QueueManager& operator=(const QueueManager&) = delete;

    // Blocking recovery at start: active/ back to incoming/, stale tmp files
    // removed, deferred/ and hold/ loaded, orphaned logs removed.
    Status recover();
    // Starts the scan timer and the first pass.
    void start();
    // A hint that incoming/ or maildrop/ has new files.
    void wakeup();
    // Takes no new work; `done` runs once nothing is in flight.
    void stop(std::function<void()> done);

    // Queue commands (queue_control). `respond` gets the reply frame.
    void handle_control(const ipc::Frame& request, bool privileged, std::function<void(ipc::Frame)> respond);

    size_t in_flight() const { return in_flight_.size(); }

    // The transport table for the next messages routed (start, SIGHUP);
    // null = none.
    void set_transports(std::shared_ptr<const TransportTable> table) { transports_ = std::move(table); }

private:
    struct Job;
    struct Entry {
        queue::Folder folder = queue::Folder::deferred;
        int64_t next_attempt = 0;
    };
    enum class Pending { none, hold, remove };

    void schedule_pump();
    void pump();
    bool start_incoming();
    bool start_maildrop();
    bool start_due_deferred();
    void activate(const std::string& id, queue::Folder from);
    void convert_maildrop(const std::string& id);
    void route(const std::shared_ptr<Job>& job);
    void route_remote(const std::shared_ptr<Job>& job, size_t attempt);
    void resolve_locally(const std::shared_ptr<Job>& job, size_t attempt, const std::string& address);
    void resolved(const std::shared_ptr<Job>& job);
    void deliver(const std::shared_ptr<Job>& job);
    void relay(const std::shared_ptr<Job>& job, const std::vector<size_t>& attempts);
    void call_done(const std::shared_ptr<Job>& job);
    bool all_waiting_on_relayd() const;
    void log_abandoned() const;
    void record(const std::shared_ptr<Job>& job);
    void finished(const std::string& id);
    void schedule_deferred(const std::string& id, int64_t next_attempt);
    void arm_deferred_timer();
    void cleanup_stale_files();

    // Control operations.
    void flush(const queue_control::Request& request, std::function<void(ipc::Frame)> respond);
    uint64_t retry_now(const std::vector<std::string>& ids);
    uint64_t apply(queue_control::Op op, const std::string& id_or_all);
    bool apply_one(queue_control::Op op, const std::string& id);

    event::Loop& loop_;
    queue::Spool spool_;
    Settings settings_;
    auth_lookup::Client& authd_;
    ipc::AsyncClient& deliverd_;
    RelayPool& relayd_;
    event::WorkerPool& pool_;
    std::shared_ptr<const TransportTable> transports_;
    size_t relay_jobs_ = 0;  // jobs in flight with a relayd request outstanding

    std::map<std::string, Entry> waiting_;              // deferred/ and hold/
    std::multimap<int64_t, std::string> due_;           // next attempt -> id (deferred only)
    std::map<std::string, Pending> in_flight_;          // id -> what to do when the job ends
    std::deque<std::string> incoming_, maildrop_;       // from the last scans
    bool incoming_dirty_ = true, maildrop_dirty_ = true;
    bool stopping_ = false;
    std::function<void()> stopped_;

    event::Timer pump_timer_;
    event::Timer scan_timer_;
    event::Timer deferred_timer_;
    event::Timer cleanup_timer_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace facteur::qmgr
