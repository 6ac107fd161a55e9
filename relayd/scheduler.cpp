// relayd's scheduler: destinations, server lists from DNS, connection
// limits with slow start, connection reuse, and the per-attempt log lines.
#include "relayd/scheduler.hpp"

#include <algorithm>
#include <ctime>

#include <fmt/format.h>

#include "libmail/ascii.hpp"
#include "libmail/log.hpp"

namespace facteur::relayd {
namespace {

using Clock = std::chrono::steady_clock;

// A server list is reused this long for new connections (DNS answers are not
// cached otherwise; this spares a lookup per message in a burst).
constexpr auto kServerListLifetime = std::chrono::seconds(10);
// A server that failed at setup is tried last for this long.
constexpr auto kDeadServerTime = std::chrono::seconds(60);

SetupFailure failure(delivery::Outcome outcome, std::string dsn, std::string reason) {
    return SetupFailure{outcome, std::move(dsn), std::move(reason)};
}

std::string lookup_error(const std::string& name, std::string_view type, const std::string& error) {
    return fmt::format("Host or domain name not found. Name service error for name={} type={}: {}", name, type,
                       error.empty() ? "Host not found" : error);
}

std::string_view outcome_word(delivery::Outcome outcome) { return delivery::outcome_name(outcome); }

// Reasons go into logs, `facteur queue list` and DSN fields, which are
// US-ASCII (RFC 3464 §2.1.1): remote replies were already made printable
// by the client; any byte still outside printable ASCII (8-bit text in a
// server's reply) becomes \xHH here. Backslashes are left alone, so text
// escaped once is not escaped again.
std::string ascii_reason(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        auto byte = static_cast<unsigned char>(c);
        if (byte >= 0x20 && byte < 0x7f)
            out += c;
        else
            out += fmt::format("\\x{:02x}", byte);
    }
    return out;
}

// MX hosts to use, best first, without this host and anything not better
// than it (RFC 5321 §5.1), or why there are none.
struct MxHosts {
    std::vector<std::string> hosts;
    std::optional<SetupFailure> failure;
};

MxHosts mx_hosts(const std::string& domain, const dns::MxAnswer& mx, const std::string& myhostname) {
    MxHosts out;
    switch (mx.status) {
    case dns::Status::ok: break;
    case dns::Status::not_found:
        out.failure = failure(delivery::Outcome::bounced, "5.1.2", lookup_error(domain, "MX", mx.error));
        return out;
    case dns::Status::no_data:  // caller falls back to the domain's addresses
        return out;
    case dns::Status::temporary:
        out.failure = failure(delivery::Outcome::deferred, "4.4.3", lookup_error(domain, "MX", mx.error));
        return out;
    }
    if (mx.null_mx) {
        out.failure = failure(delivery::Outcome::bounced, "5.1.10",
                              fmt::format("Domain {} does not accept mail (nullMX)", domain));
        return out;
    }
    std::optional<uint16_t> own;
    for (const dns::MxRecord& record : mx.records)
        if (ascii::lowercase(record.host) == myhostname && (!own || record.preference < *own)) own = record.preference;
    for (const dns::MxRecord& record : mx.records) {
        if (own && record.preference >= *own) continue;
        if (std::find(out.hosts.begin(), out.hosts.end(), record.host) == out.hosts.end())
            out.hosts.push_back(record.host);
    }
    if (out.hosts.empty())
        out.failure = failure(delivery::Outcome::bounced, "5.4.6",
                              own ? fmt::format("mail for {} loops back to myself", domain)
                                  : fmt::format("no usable MX host for {}", domain));
    return out;
}

}  // namespace

ServerList servers_from_host(const std::string& host, const dns::AddressAnswer& answer, uint16_t port,
                             size_t address_limit) {
    ServerList list;
    if (answer.status != dns::Status::ok) {
        bool temporary = answer.status == dns::Status::temporary;
        std::string reason = lookup_error(host, "A", answer.status == dns::Status::no_data && answer.error.empty()
                                                         ? "Host found but no data record"
                                                         : answer.error);
        list.failure = failure(temporary ? delivery::Outcome::deferred : delivery::Outcome::bounced,
                               temporary ? "4.4.3" : "5.4.4", reason);
        return list;
    }
    for (const std::string& address : answer.addresses) {
        if (list.servers.size() >= address_limit) break;
        list.servers.push_back(Server{host, address, port});
    }
    return list;
}

ServerList servers_from_mx(const std::string& domain, const dns::MxAnswer& mx,
                           const std::map<std::string, dns::AddressAnswer>& addresses, uint16_t port,
                           const std::string& myhostname, size_t address_limit) {
    ServerList list;
    MxHosts hosts = mx_hosts(domain, mx, myhostname);
    if (hosts.failure) {
        list.failure = hosts.failure;
        return list;
    }
    if (mx.status == dns::Status::no_data) {
        // RFC 5321 §5.1: no MX records -> the domain itself is the host.
        auto it = addresses.find(domain);
        return servers_from_host(domain, it == addresses.end() ? dns::AddressAnswer{} : it->second, port,
                                 address_limit);
    }
    std::optional<SetupFailure> first_problem;
    bool temporary = false;
    for (const std::string& host : hosts.hosts) {
        auto it = addresses.find(host);
        if (it == addresses.end()) continue;  // past the address limit
        if (it->second.status != dns::Status::ok) {
            temporary = temporary || it->second.status == dns::Status::temporary;
            if (!first_problem) {
                ServerList one = servers_from_host(host, it->second, port, address_limit);
                first_problem = one.failure;
            }
            continue;
        }
        for (const std::string& address : it->second.addresses) {
            if (list.servers.size() >= address_limit) break;
            list.servers.push_back(Server{host, address, port});
        }
    }
    if (list.servers.empty()) {
        SetupFailure problem =
            first_problem.value_or(failure(delivery::Outcome::deferred, "4.4.3",
                                           fmt::format("no address found for the MX hosts of {}", domain)));
        if (temporary) {
            problem.outcome = delivery::Outcome::deferred;
            problem.dsn = "4.4.3";
        }
        list.failure = problem;
    }
    return list;
}

struct Scheduler::Delivery {
    Job job;
    JobDone done;
    std::string key;
    size_t cursor = 0;  // next server to try
    std::optional<SetupFailure> last_failure;
    std::string last_relay = "none";
    std::shared_ptr<SmtpClient> connecting;
};

struct Scheduler::Destination {
    std::string key;
    relay::Nexthop hop;
    const ClientSettings* client = nullptr;
    std::deque<std::shared_ptr<Delivery>> waiting;
    std::vector<std::shared_ptr<SmtpClient>> idle;
    std::map<SmtpClient*, std::unique_ptr<event::Timer>> idle_timers;
    size_t connections = 0;  // connecting, busy and idle
    size_t window = 1;
    std::optional<ServerList> servers;
    Clock::time_point resolved_at;
    bool resolving = false;
};

Scheduler::Scheduler(event::Loop& loop, dns::Resolver& resolver, const Settings& settings)
    : loop_(loop), resolver_(resolver), settings_(settings), sweep_timer_(loop, [this] { sweep(); }) {
    sweep_timer_.start_repeating(std::chrono::seconds(30));
}

void Scheduler::sweep() {
    auto now = Clock::now();
    for (auto it = destinations_.begin(); it != destinations_.end();) {
        Destination& d = *it->second;
        bool idle = d.connections == 0 && d.waiting.empty() && !d.resolving && d.idle.empty();
        it = idle && now - d.resolved_at > kServerListLifetime ? destinations_.erase(it) : std::next(it);
    }
    for (auto it = dead_servers_.begin(); it != dead_servers_.end();)
        it = it->second <= now ? dead_servers_.erase(it) : std::next(it);
}

Scheduler::~Scheduler() {
    *alive_ = false;
    shutdown();
}

void Scheduler::set_settings(const Settings& settings) {
    settings_ = settings;
    ++generation_;
    // Destinations keep the client settings they were made with until they
    // are forgotten; new ones use the new settings.
}

void Scheduler::shutdown() {
    for (auto& [key, destination] : destinations_) {
        for (auto& client : destination->idle) client->quit();
        destination->idle.clear();
        destination->idle_timers.clear();
        destination->waiting.clear();
    }
}

Scheduler::Destination& Scheduler::destination_for(const relay::Nexthop& hop, const std::string& first_domain) {
    // The TLS policy is looked up by the next hop's name, then by the
    // recipient domain (for mail sent to a domain's MX, both are the same).
    TlsLevel level = settings_.default_tls;
    if (auto found = settings_.tls_policy.find(hop.host))
        level = *found;
    else if (auto by_domain = settings_.tls_policy.find(first_domain))
        level = *by_domain;
    std::optional<Credentials> credentials = settings_.credentials.find(hop.text(), hop.host);
    std::string key = fmt::format("{}|{}|{}", hop.text(), tls_level_name(level), credentials ? credentials->user : "");
    auto it = destinations_.find(key);
    if (it != destinations_.end()) return *it->second;

    std::string variant_key = fmt::format("{}|{}|{}|{}", generation_, tls_level_name(level),
                                          credentials ? credentials->user : "", credentials ? credentials->password : "");
    std::unique_ptr<ClientSettings>& variant = client_variants_[variant_key];
    if (!variant) {
        variant = std::make_unique<ClientSettings>(settings_.client);
        variant->tls = level;
        variant->credentials = credentials;
    }
    const ClientSettings* client = variant.get();

    auto destination = std::make_unique<Destination>();
    destination->key = key;
    destination->hop = hop;
    destination->client = client;
    destination->window = settings_.initial_destination_concurrency;
    Destination& ref = *destination;
    destinations_.emplace(key, std::move(destination));
    return ref;
}

void Scheduler::relay(Job job, JobDone done) {
    std::string first_domain;
    if (!job.request.recipients.empty()) {
        const std::string& address = job.envelope.recipients[job.request.recipients.front()].address;
        if (size_t at = address.rfind('@'); at != std::string::npos) first_domain = address.substr(at + 1);
    }
    Destination& destination = destination_for(job.request.nexthop, first_domain);
    auto delivery = std::make_shared<Delivery>();
    delivery->job = std::move(job);
    delivery->done = std::move(done);
    delivery->key = destination.key;
    destination.waiting.push_back(std::move(delivery));
    pump(destination);
}

void Scheduler::pump(Destination& destination) {
    // Idle connections first: they need no DNS and no handshake.
    while (!destination.waiting.empty() && !destination.idle.empty()) {
        std::shared_ptr<SmtpClient> client = destination.idle.back();
        destination.idle.pop_back();
        destination.idle_timers.erase(client.get());
        if (!client->ready()) {
            client->quit();
            --destination.connections;
            continue;
        }
        std::shared_ptr<Delivery> delivery = destination.waiting.front();
        destination.waiting.pop_front();
        send(destination, std::move(delivery), std::move(client));
    }
    if (destination.waiting.empty()) return;
    if (!destination.servers || Clock::now() - destination.resolved_at > kServerListLifetime) {
        if (!destination.resolving) resolve(destination);
        return;
    }
    if (destination.servers->failure) {
        std::deque<std::shared_ptr<Delivery>> failed;
        failed.swap(destination.waiting);
        for (auto& delivery : failed) fail_all(delivery, *destination.servers->failure, "none");
        return;
    }
    while (!destination.waiting.empty() && destination.connections < destination.window) {
        std::shared_ptr<Delivery> delivery = destination.waiting.front();
        destination.waiting.pop_front();
        connect_next(destination, std::move(delivery));
    }
}

void Scheduler::resolve(Destination& destination) {
    destination.resolving = true;
    const relay::Nexthop hop = destination.hop;
    const std::string key = destination.key;
    if (hop.literal) {
        ServerList list;
        list.servers.push_back(Server{hop.host, hop.host, hop.port});
        resolved(key, std::move(list));
        return;
    }
    const size_t limit = settings_.mx_address_limit;
    const bool ipv6 = settings_.ipv6;
    if (!hop.mx_lookup) {
        resolver_.addresses(hop.host, ipv6, [this, key, hop, limit, alive = alive_](dns::AddressAnswer answer) {
            if (!*alive) return;
            ServerList list = servers_from_host(hop.host, answer, hop.port, limit);
            // A next hop the admin named (relayhost, transport table) that
            // does not resolve is a configuration problem: never bounce.
            if (list.failure) {
                list.failure->outcome = delivery::Outcome::deferred;
                list.failure->dsn = "4.4.3";
            }
            resolved(key, std::move(list));
        });
        return;
    }
    resolver_.mx(hop.host, [this, key, hop, limit, ipv6, alive = alive_](dns::MxAnswer mx) {
        if (!*alive) return;
        std::vector<std::string> hosts;
        if (mx.status == dns::Status::no_data) {
            hosts.push_back(hop.host);
        } else {
            MxHosts found = mx_hosts(hop.host, mx, settings_.myhostname);
            if (found.failure) {
                resolved(key, servers_from_mx(hop.host, mx, {}, hop.port, settings_.myhostname, limit));
                return;
            }
            hosts = found.hosts;
            if (hosts.size() > limit) hosts.resize(limit);
        }
        auto answers = std::make_shared<std::map<std::string, dns::AddressAnswer>>();
        auto outstanding = std::make_shared<size_t>(hosts.size());
        auto mx_shared = std::make_shared<dns::MxAnswer>(std::move(mx));
        for (const std::string& host : hosts) {
            resolver_.addresses(host, ipv6, [this, key, hop, limit, host, answers, outstanding, mx_shared,
                                             alive](dns::AddressAnswer answer) {
                if (!*alive) return;
                (*answers)[host] = std::move(answer);
                if (--*outstanding != 0) return;
                resolved(key, servers_from_mx(hop.host, *mx_shared, *answers, hop.port, settings_.myhostname, limit));
            });
        }
    });
}

void Scheduler::resolved(const std::string& key, ServerList list) {
    auto it = destinations_.find(key);
    if (it == destinations_.end()) return;
    Destination& destination = *it->second;
    destination.resolving = false;
    if (list.failure)
        log::debug("destination {}: {}", destination.hop.text(), list.failure->reason);
    else
        log::debug("destination {}: {} server address(es), first {}", destination.hop.text(), list.servers.size(),
                   list.servers.front().description());
    destination.servers = std::move(list);
    destination.resolved_at = Clock::now();
    pump(destination);
}

void Scheduler::connect_next(Destination& destination, std::shared_ptr<Delivery> delivery) {
    const std::vector<Server>& servers = destination.servers->servers;
    auto now = Clock::now();
    auto dead = [&](const Server& server) {
        auto it = dead_servers_.find(server.description());
        return it != dead_servers_.end() && it->second > now;
    };
    size_t index = delivery->cursor;
    while (index < servers.size() && dead(servers[index])) ++index;
    if (index >= servers.size()) index = delivery->cursor;  // all dead: try them anyway
    if (index >= servers.size()) {
        fail_all(delivery,
                 delivery->last_failure.value_or(failure(delivery::Outcome::deferred, "4.4.1",
                                                         fmt::format("no server for {} could be reached",
                                                                     destination.hop.text()))),
                 delivery->last_relay);
        pump(destination);
        return;
    }
    delivery->cursor = index + 1;
    const Server server = servers[index];
    ++destination.connections;
    const std::string key = destination.key;
    delivery->connecting = SmtpClient::connect(
        loop_, *destination.client, server,
        [this, key, delivery, server, alive = alive_](std::optional<SetupFailure> problem) {
            if (!*alive) return;
            std::shared_ptr<SmtpClient> client = std::move(delivery->connecting);
            auto it = destinations_.find(key);
            if (it == destinations_.end()) return;
            Destination& destination = *it->second;
            if (problem) {
                --destination.connections;
                problem->reason = ascii_reason(problem->reason);
                log::info("{}: connection to {} failed: {}", delivery->job.request.queue_id, server.description(),
                          problem->reason);
                dead_servers_[server.description()] = Clock::now() + kDeadServerTime;
                destination.window = std::max<size_t>(1, destination.connections);
                delivery->last_failure = std::move(problem);
                delivery->last_relay = server.description();
                connect_next(destination, delivery);
                return;
            }
            dead_servers_.erase(server.description());
            send(destination, delivery, std::move(client));
        });
}

void Scheduler::send(Destination& destination, std::shared_ptr<Delivery> delivery,
                     std::shared_ptr<SmtpClient> client) {
    Message message;
    message.queue_id = delivery->job.request.queue_id;
    message.queue_file = delivery->job.request.queue_file;
    message.envelope = delivery->job.envelope;
    message.recipients = delivery->job.request.recipients;
    const std::string key = destination.key;
    client->send(std::move(message), [this, key, delivery, client, alive = alive_](MessageOutcome outcome) {
        if (!*alive) return;
        std::vector<relay::RecipientResult> results;
        std::string relay = client->server().description();
        bool any_sent = false;
        for (size_t i = 0; i < delivery->job.request.recipients.size(); ++i) {
            relay::RecipientResult result;
            if (i < outcome.recipients.size()) {
                const RecipientOutcome& r = outcome.recipients[i];
                result.outcome = r.outcome;
                result.dsn = r.dsn;
                result.reason = r.reason;
                result.remote_dsn = r.remote_dsn;
            } else {
                result.outcome = delivery::Outcome::deferred;
                result.dsn = "4.3.0";
                result.reason = "relayd: no outcome for this recipient";
            }
            any_sent = any_sent || result.outcome == delivery::Outcome::sent;
            result.relay = relay;
            results.push_back(std::move(result));
        }
        finish(delivery, std::move(results));

        auto it = destinations_.find(key);
        if (it == destinations_.end()) {
            client->quit();
            return;
        }
        Destination& destination = *it->second;
        if (any_sent)
            destination.window = std::min(settings_.destination_concurrency_limit, destination.window + 1);
        if (!outcome.reusable || client->messages_sent() >= settings_.connection_reuse_limit) {
            client->quit();
            release(destination);
            return;
        }
        if (!destination.waiting.empty()) {
            std::shared_ptr<Delivery> next = destination.waiting.front();
            destination.waiting.pop_front();
            send(destination, std::move(next), client);
            return;
        }
        park(destination, client);
    });
}

void Scheduler::park(Destination& destination, std::shared_ptr<SmtpClient> client) {
    if (settings_.connection_cache_time.count() == 0) {
        client->quit();
        release(destination);
        return;
    }
    const std::string key = destination.key;
    SmtpClient* raw = client.get();
    auto drop = [this, key, raw, alive = alive_](bool send_quit) {
        if (!*alive) return;
        auto it = destinations_.find(key);
        if (it == destinations_.end()) return;
        Destination& destination = *it->second;
        auto found = std::find_if(destination.idle.begin(), destination.idle.end(),
                                  [raw](const std::shared_ptr<SmtpClient>& c) { return c.get() == raw; });
        if (found == destination.idle.end()) return;
        std::shared_ptr<SmtpClient> client = *found;
        destination.idle.erase(found);
        destination.idle_timers.erase(raw);
        if (send_quit) client->quit();
        release(destination);
    };
    client->on_lost([drop] { drop(false); });
    auto timer = std::make_unique<event::Timer>(loop_, [drop] { drop(true); });
    timer->start(settings_.connection_cache_time);
    destination.idle_timers[raw] = std::move(timer);
    destination.idle.push_back(std::move(client));
}

void Scheduler::release(Destination& destination) {
    if (destination.connections > 0) --destination.connections;
    const std::string key = destination.key;
    pump(destination);
    forget_if_idle(key);
}

void Scheduler::forget_if_idle(const std::string& key) {
    auto it = destinations_.find(key);
    if (it == destinations_.end()) return;
    Destination& destination = *it->second;
    if (destination.connections == 0 && destination.waiting.empty() && !destination.resolving &&
        destination.idle.empty())
        destinations_.erase(it);
}

void Scheduler::fail_all(const std::shared_ptr<Delivery>& delivery, const SetupFailure& problem,
                         const std::string& relay) {
    std::vector<relay::RecipientResult> results;
    for (size_t i = 0; i < delivery->job.request.recipients.size(); ++i) {
        relay::RecipientResult result;
        result.outcome = problem.outcome;
        result.dsn = problem.dsn;
        result.reason = problem.reason;
        result.relay = relay;
        results.push_back(std::move(result));
    }
    finish(delivery, std::move(results));
}

void Scheduler::finish(std::shared_ptr<Delivery> delivery, std::vector<relay::RecipientResult> results) {
    const Job& job = delivery->job;
    int64_t delay = job.envelope.arrival_time > 0
                        ? std::max<int64_t>(0, static_cast<int64_t>(std::time(nullptr)) - job.envelope.arrival_time)
                        : 0;
    for (size_t i = 0; i < results.size(); ++i) {
        relay::RecipientResult& result = results[i];
        result.reason = ascii_reason(result.reason);
        log::info("{}: to=<{}>, relay={}, delay={}, dsn={}, status={} ({})", job.request.queue_id,
                  log::printable(job.envelope.recipients[job.request.recipients[i]].address), result.relay, delay,
                  result.dsn, outcome_word(result.outcome), result.reason);
    }
    JobDone done = std::move(delivery->done);
    if (done) done(std::move(results));
}

}  // namespace facteur::relayd
