// relayd's scheduler: for each destination (next hop) it resolves the
// servers (MX records by preference, or the host's own addresses), keeps a
// queue of messages, opens connections within a per-destination limit that
// grows from a small start (slow start) and falls back after failures,
// reuses connections for more messages, and moves on to the next server
// when one cannot be reached or refuses the session.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "libmail/dns.hpp"
#include "libmail/event.hpp"
#include "libmail/queue.hpp"
#include "libmail/relay_protocol.hpp"
#include "relayd/settings.hpp"
#include "relayd/smtp_client.hpp"

namespace facteur::relayd {

struct Job {
    relay::Request request;
    queue::Envelope envelope;  // read from request.queue_file
};

using JobDone = std::function<void(std::vector<relay::RecipientResult>)>;

// The servers of a destination, in the order to try them, or why there are
// none (then every recipient gets `failure`).
struct ServerList {
    std::vector<Server> servers;
    std::optional<SetupFailure> failure;
};

class Scheduler {
public:
    Scheduler(event::Loop& loop, dns::Resolver& resolver, const Settings& settings);
    ~Scheduler();
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    // `done` runs once, on the loop, with one result per job recipient.
    void relay(Job job, JobDone done);
    // New settings (SIGHUP): used for connections opened from now on.
    void set_settings(const Settings& settings);
    // Closes idle connections (QUIT); work in progress is dropped without
    // callbacks (qmgr retries what got no answer).
    void shutdown();

    size_t destinations() const { return destinations_.size(); }

private:
    struct Delivery;
    struct Destination;

    Destination& destination_for(const relay::Nexthop& hop, const std::string& first_domain);
    void pump(Destination& destination);
    void resolve(Destination& destination);
    void resolved(const std::string& key, ServerList list);
    void connect_next(Destination& destination, std::shared_ptr<Delivery> delivery);
    void send(Destination& destination, std::shared_ptr<Delivery> delivery, std::shared_ptr<SmtpClient> client);
    void finish(std::shared_ptr<Delivery> delivery, std::vector<relay::RecipientResult> results);
    void fail_all(const std::shared_ptr<Delivery>& delivery, const SetupFailure& failure, const std::string& relay);
    void park(Destination& destination, std::shared_ptr<SmtpClient> client);
    void release(Destination& destination);
    void forget_if_idle(const std::string& key);
    void sweep();

    event::Loop& loop_;
    dns::Resolver& resolver_;
    Settings settings_;
    std::map<std::string, std::unique_ptr<Destination>> destinations_;
    // Client settings per (TLS level, credentials, settings generation):
    // they live as long as the scheduler, since a connection still closing
    // after its destination was forgotten may read them.
    std::map<std::string, std::unique_ptr<ClientSettings>> client_variants_;
    unsigned generation_ = 0;
    std::map<std::string, std::chrono::steady_clock::time_point> dead_servers_;  // address:port -> until
    event::Timer sweep_timer_;  // forgets idle destinations and old dead-server marks
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Builds the server list for a destination from DNS answers (RFC 5321 §5.1,
// RFC 7505). Pure, for tests: `addresses` maps each host to its answer.
ServerList servers_from_mx(const std::string& domain, const dns::MxAnswer& mx,
                           const std::map<std::string, dns::AddressAnswer>& addresses, uint16_t port,
                           const std::string& myhostname, size_t address_limit);
ServerList servers_from_host(const std::string& host, const dns::AddressAnswer& answer, uint16_t port,
                             size_t address_limit);

}  // namespace facteur::relayd
