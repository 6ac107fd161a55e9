// The per-message pipeline: route every recipient still to do through
// authd, hand local targets to deliverd, then log the outcomes and either
// remove the message (returning failures to the sender) or defer it.
#include "qmgr/message_job.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <map>

#include <fmt/format.h>

#include "libmail/address.hpp"
#include "libmail/log.hpp"
#include "libmail/message_header.hpp"
#include "libmail/system.hpp"
#include "qmgr/bounce.hpp"

namespace facteur::qmgr {
namespace {

using queue::RecipientState;
using queue::RecipientStatus;

int64_t now_seconds() { return static_cast<int64_t>(std::time(nullptr)); }

RecipientStatus outcome(RecipientState state, std::string dsn, std::string reason) {
    RecipientStatus status;
    status.state = state;
    status.time = now_seconds();
    status.dsn = std::move(dsn);
    status.reason = std::move(reason);
    return status;
}

RecipientState state_of(delivery::Outcome outcome) {
    switch (outcome) {
    case delivery::Outcome::sent: return RecipientState::sent;
    case delivery::Outcome::bounced: return RecipientState::bounced;
    case delivery::Outcome::deferred: return RecipientState::deferred;
    }
    return RecipientState::deferred;
}

bool is_final(RecipientState state) {
    return state == RecipientState::sent || state == RecipientState::bounced || state == RecipientState::expanded;
}

struct RecordPlan {
    queue::Spool spool{std::string()};
    Settings settings;
    std::string id, path;
    queue::Envelope envelope;
    queue::StatusLog before;
    std::vector<std::pair<size_t, RecipientStatus>> outcomes;
    std::vector<std::pair<size_t, std::vector<std::string>>> expansions;
};

struct RecordResult {
    enum class Disposition { removed, deferred, failed } disposition = Disposition::failed;
    int64_t next_attempt = 0;
    std::string error;
    std::vector<std::pair<size_t, RecipientStatus>> outcomes;  // as finally logged
    std::vector<std::string> new_files;                      // expansions and the report
    std::string report_id;
    std::string warning_id;  // the delay warning queued by this attempt
    bool report_discarded = false;  // failures of a null-sender message
};

// Copies the message of `path` into a new incoming/ file for `envelope`.
Result<std::string> write_copy(const queue::Spool& spool, const std::string& path, queue::Envelope envelope,
                               std::string_view prefix = {}) {
    auto reader = queue::Reader::open(path);
    if (!reader) return make_error(reader.error());
    std::string id = queue::new_queue_id();
    auto writer = queue::Writer::create(spool, queue::Folder::incoming, id);
    if (!writer) return make_error(writer.error());
    if (!prefix.empty()) {
        if (Status s = writer->append(prefix); !s) return make_error(s.error());
    }
    Status copied;
    if (Status s = reader->read_message([&](std::string_view chunk) {
            copied = writer->append(chunk);
            return bool(copied);
        });
        !s)
        return make_error(s.error());
    if (!copied) return make_error(copied.error());
    if (Status s = writer->commit(std::move(envelope)); !s) return make_error(s.error());
    return id;
}

Result<std::string> write_report(const RecordPlan& plan, const std::vector<ReportedRecipient>& recipients) {
    auto reader = queue::Reader::open(plan.path);
    if (!reader) return make_error(reader.error());
    ReportInput input;
    input.hostname = plan.settings.hostname;
    input.queue_id = plan.id;
    input.report_id = queue::new_queue_id();
    input.envelope = plan.envelope;
    input.recipients = recipients;
    input.now = static_cast<std::time_t>(now_seconds());
    input.will_retry_until = static_cast<std::time_t>(plan.envelope.arrival_time + plan.settings.queue_lifetime);
    bool has_failure = std::any_of(recipients.begin(), recipients.end(),
                                   [](const ReportedRecipient& r) { return r.action == Action::failed; });
    if (returned_part(plan.envelope.ret, reader->message_size(), plan.settings.bounce_full_limit, has_failure) ==
        Returned::full) {
        auto message = reader->message(plan.settings.bounce_full_limit);
        if (!message) return make_error(message.error());
        input.original = std::move(*message);
        input.original_is_complete = true;
    } else {
        auto prefix = reader->message_prefix(64 * 1024);
        if (!prefix) return make_error(prefix.error());
        input.original = prefix->substr(0, message::header_length(*prefix));
        input.original_is_complete = false;
    }
    std::string text = compose_report(input);

    queue::Envelope envelope;
    envelope.sender = "";  // RFC 5321 §4.5.5: reports use the null reverse-path
    envelope.recipients = {{plan.envelope.sender, "", queue::notify_never}};
    envelope.arrival_time = now_seconds();
    envelope.body = plan.envelope.body == queue::BodyType::seven_bit ? queue::BodyType::seven_bit
                                                                      : queue::BodyType::eight_bit_mime;
    envelope.client_address = "local";
    envelope.protocol = "local";
    auto writer = queue::Writer::create(plan.spool, queue::Folder::incoming, input.report_id);
    if (!writer) return make_error(writer.error());
    if (Status s = writer->append(text); !s) return make_error(s.error());
    if (Status s = writer->commit(std::move(envelope)); !s) return make_error(s.error());
    return input.report_id;
}

RecordResult carry_out(RecordPlan plan) {
    RecordResult result;
    int64_t now = now_seconds();

    // Alias expansions become new messages (they "re-enter the queue").
    for (auto& [index, targets] : plan.expansions) {
        const queue::Recipient& original = plan.envelope.recipients[index];
        queue::Envelope envelope = plan.envelope;
        envelope.recipients.clear();
        for (const std::string& target : targets)
            envelope.recipients.push_back(
                {target, original.orcpt.empty() ? "rfc822;" + original.address : original.orcpt, original.notify});
        envelope.arrival_time = now;
        envelope.expansion_depth = plan.envelope.expansion_depth + 1;
        auto written = write_copy(plan.spool, plan.path, std::move(envelope));
        for (auto& [i, status] : plan.outcomes) {
            if (i != index) continue;
            if (written) {
                result.new_files.push_back(*written);
                status = outcome(RecipientState::expanded, "2.0.0",
                                 fmt::format("alias expanded to {} target(s), queued as {}", targets.size(), *written));
            } else {
                status = outcome(RecipientState::deferred, "4.3.0", "cannot queue the alias expansion: " + written.error());
            }
        }
    }

    queue::StatusLog merged = plan.before;
    for (const auto& [index, status] : plan.outcomes)
        if (!is_final(merged.recipients[index].state)) merged.recipients[index] = status;

    // Expiry (like Postfix's maximal_queue_lifetime): what is still deferred
    // fails for good, with the last reason.
    int64_t lifetime = plan.envelope.sender.empty() ? plan.settings.bounce_lifetime : plan.settings.queue_lifetime;
    bool expired = now - plan.envelope.arrival_time >= lifetime;
    for (size_t i = 0; i < merged.recipients.size(); ++i) {
        RecipientStatus& status = merged.recipients[i];
        if (is_final(status.state)) continue;
        if (!expired) continue;
        status = outcome(RecipientState::bounced, "4.4.7",
                         fmt::format("message expired after {} day(s) in the queue{}{}", lifetime / 86400,
                                     status.reason.empty() ? "" : ": ", status.reason));
        bool listed = false;
        for (auto& [index, logged] : plan.outcomes)
            if (index == i) logged = status, listed = true;
        if (!listed) plan.outcomes.emplace_back(i, status);
    }

    std::string lines;
    for (const auto& [index, status] : plan.outcomes) lines += queue::format_recipient_line(index, status);
    result.outcomes = plan.outcomes;

    if (merged.all_done()) {
        std::vector<ReportedRecipient> reported;
        for (size_t i = 0; i < merged.recipients.size(); ++i) {
            const RecipientStatus& status = merged.recipients[i];
            const queue::Recipient& recipient = plan.envelope.recipients[i];
            if (status.state == RecipientState::bounced && wants_failure_report(recipient.notify)) {
                reported.push_back({recipient.address, recipient.orcpt, Action::failed, status.dsn, status.reason,
                                    status.relay});
            } else if (status.state == RecipientState::sent && wants_success_report(recipient.notify)) {
                // RFC 3461 §6.2.3: a next hop that took NOTIFY reports
                // itself; one without DSN support leaves "relayed" to us
                // (RFC 3464 §2.3.3). Local deliveries are "delivered".
                if (status.relay.empty())
                    reported.push_back({recipient.address, recipient.orcpt, Action::delivered, "2.0.0", status.reason, ""});
                else if (!status.remote_dsn)
                    reported.push_back(
                        {recipient.address, recipient.orcpt, Action::relayed, "2.0.0", status.reason, status.relay});
            }
        }
        if (!reported.empty() && !plan.before.bounce_queued) {
            if (plan.envelope.sender.empty()) {
                // Never a report about a report (RFC 5321 §4.5.5).
                result.report_discarded = true;
            } else {
                auto report = write_report(plan, reported);
                if (!report) {
                    // Keep the message: the report is retried on the next pass.
                    result.error = "cannot queue the delivery status notification: " + report.error();
                } else {
                    result.report_id = *report;
                    result.new_files.push_back(*report);
                    lines += "b\n";
                }
            }
        }
        if (result.error.empty()) {
            if (Status s = queue::append_status_log(plan.spool, plan.id, lines); !s) {
                log::warning("{}: {}", plan.id, s.error());
            }
            if (unlink(plan.path.c_str()) != 0) {
                result.error = fmt::format("cannot remove {}: {}", plan.path, system::errno_text(errno));
                return result;
            }
            unlink(plan.spool.log_path(plan.id).c_str());
            result.disposition = RecordResult::Disposition::removed;
            return result;
        }
    }

    int64_t age = std::max<int64_t>(0, now - plan.envelope.arrival_time);
    // Delay warning (RFC 3464 action delayed, like Postfix's
    // delay_warning_time): once per message, never to the null sender, for
    // the recipients still deferred that did not refuse NOTIFY=DELAY.
    if (plan.settings.delay_warning > 0 && age >= plan.settings.delay_warning && !plan.before.delay_warned &&
        !plan.envelope.sender.empty()) {
        std::vector<ReportedRecipient> delayed;
        for (size_t i = 0; i < merged.recipients.size(); ++i) {
            const RecipientStatus& status = merged.recipients[i];
            const queue::Recipient& recipient = plan.envelope.recipients[i];
            if (status.state != RecipientState::deferred || !wants_delay_report(recipient.notify)) continue;
            delayed.push_back({recipient.address, recipient.orcpt, Action::delayed, status.dsn, status.reason, status.relay});
        }
        if (delayed.empty()) {
            lines += "w\n";  // nobody to warn, now or later
        } else if (auto report = write_report(plan, delayed); report) {
            result.warning_id = *report;
            result.new_files.push_back(*report);
            lines += "w\n";
        } else {
            // Tried again at the next deferral.
            log::warning("{}: cannot queue the delay warning: {}", plan.id, report.error());
        }
    }
    result.next_attempt = now + backoff_seconds(age, plan.settings.minimal_backoff, plan.settings.maximal_backoff);
    lines += fmt::format("n {}\n", result.next_attempt);
    if (Status s = queue::append_status_log(plan.spool, plan.id, lines); !s) {
        // Outcomes not logged are tried again: at worst a duplicate.
        log::error("{}: {}", plan.id, s.error());
    }
    std::string target = plan.spool.file_path(queue::Folder::deferred, plan.id);
    if (rename(plan.path.c_str(), target.c_str()) != 0) {
        result.error = fmt::format("cannot move to deferred: {}", system::errno_text(errno));
        return result;
    }
    result.disposition = RecordResult::Disposition::deferred;
    return result;
}

// A recipient authd resolved as ours (or, via the transport table, one it
// should have been): the mailbox, the alias expansion, or "user unknown".
void take_local(Attempt& attempt, const std::string& address, const auth_lookup::Resolution& resolution, int depth,
                int max_depth) {
    switch (resolution.kind) {
    case auth_lookup::RecipientKind::local_user: {
        const auth_lookup::UserInfo& user = *resolution.user;
        attempt.kind = Attempt::Kind::mailbox;
        attempt.target.recipient = address;
        attempt.target.kind = delivery::Kind::mailbox;
        attempt.target.user = user.address;
        attempt.target.mail_path = user.mail_path;
        attempt.target.format = user.format;
        attempt.target.quota_bytes = user.quota_bytes;
        return;
    }
    case auth_lookup::RecipientKind::alias:
        attempt.kind = Attempt::Kind::done;
        if (depth >= max_depth) {
            attempt.outcome =
                outcome(RecipientState::bounced, "5.4.6", "mail forwarding loop: alias expansion nested too deep");
        } else if (resolution.targets.empty()) {
            attempt.outcome = outcome(RecipientState::bounced, "5.1.1", "alias has no targets");
        } else {
            attempt.kind = Attempt::Kind::expand;
            attempt.expansion = resolution.targets;
        }
        return;
    case auth_lookup::RecipientKind::unknown_local:
    case auth_lookup::RecipientKind::remote:
        // remote: a domain the transport table routes here that is not ours.
        attempt.kind = Attempt::Kind::done;
        attempt.outcome = outcome(RecipientState::bounced, "5.1.1", "user unknown");
        return;
    }
}

}  // namespace

void QueueManager::route(const std::shared_ptr<Job>& job) {
    const queue::Envelope& envelope = job->envelope;
    job->transports = transports_;
    for (size_t i = 0; i < envelope.recipients.size(); ++i) {
        if (is_final(job->status.recipients[i].state)) continue;
        Attempt attempt;
        attempt.index = i;
        const std::string& address = envelope.recipients[i].address;
        if (!address.empty() && address.front() == '|') {
            // Only alias expansions (written by qmgr) hold pipe targets.
            attempt.kind = Attempt::Kind::pipe;
            attempt.target.recipient = address;
            attempt.target.kind = delivery::Kind::pipe;
            attempt.target.command = address.substr(1);
            attempt.target.alias = envelope.recipients[i].orcpt;
        } else if (!address.empty() && address.front() == '/') {
            attempt.kind = Attempt::Kind::done;
            attempt.outcome = outcome(RecipientState::bounced, "5.3.0", "delivery to files is not supported; use a |command");
        }
        job->attempts.push_back(std::move(attempt));
    }
    // Counted before any lookup starts, so that no answer can find the
    // count at zero while others are still to be sent.
    for (const Attempt& attempt : job->attempts)
        if (attempt.kind == Attempt::Kind::lookup) ++job->lookups_outstanding;
    if (job->lookups_outstanding == 0) {
        resolved(job);
        return;
    }
    for (size_t a = 0; a < job->attempts.size(); ++a) {
        if (job->attempts[a].kind != Attempt::Kind::lookup) continue;
        const std::string& address = envelope.recipients[job->attempts[a].index].address;
        authd_.resolve(address, [this, job, a, alive = alive_](Result<auth_lookup::Resolution> resolution) {
            if (!*alive) return;
            Attempt& attempt = job->attempts[a];
            const std::string& address = job->envelope.recipients[attempt.index].address;
            if (!resolution) {
                attempt.kind = Attempt::Kind::done;
                attempt.outcome = outcome(RecipientState::deferred, "4.3.0", "directory lookup failed: " + resolution.error());
            } else if (resolution->kind == auth_lookup::RecipientKind::remote) {
                route_remote(job, a);
            } else {
                take_local(attempt, address, *resolution, job->envelope.expansion_depth, settings_.max_expansion_depth);
            }
            if (--job->lookups_outstanding == 0) resolved(job);
        });
    }
}

void QueueManager::route_remote(const std::shared_ptr<Job>& job, size_t a) {
    Attempt& attempt = job->attempts[a];
    const std::string& address = job->envelope.recipients[attempt.index].address;
    size_t at = address.rfind('@');
    std::string domain = at == std::string::npos ? std::string() : address.substr(at + 1);
    auto finish = [&attempt](RecipientState state, std::string dsn, std::string reason) {
        attempt.kind = Attempt::Kind::done;
        attempt.outcome = outcome(state, std::move(dsn), std::move(reason));
    };
    const Transport* transport = job->transports ? job->transports->find(domain) : nullptr;
    std::optional<relay::Nexthop> nexthop = settings_.relayhost;
    if (transport) {
        switch (transport->kind) {
        case Transport::Kind::local:
            if (transport->local_domain.empty()) {
                // authd already said this domain is not ours.
                return finish(RecipientState::bounced, "5.1.1", "user unknown");
            }
            // Resolved as a local address of the other domain.
            return resolve_locally(job, a, address.substr(0, at + 1) + transport->local_domain);
        case Transport::Kind::error:
            return finish(transport->status.front() == '4' ? RecipientState::deferred : RecipientState::bounced,
                          transport->status, transport->text);
        case Transport::Kind::smtp:
            // "smtp" alone: the domain's own MX, whatever relayhost says.
            nexthop = transport->nexthop;
            break;
        }
    }
    if (!nexthop) {
        auto own = relay::parse_nexthop(domain);
        if (!own) return finish(RecipientState::bounced, "5.1.2", "bad destination domain: " + own.error());
        nexthop = std::move(*own);
    }
    attempt.kind = Attempt::Kind::relay;
    attempt.nexthop = std::move(*nexthop);
}

void QueueManager::resolve_locally(const std::shared_ptr<Job>& job, size_t a, const std::string& address) {
    ++job->lookups_outstanding;
    authd_.resolve(address, [this, job, a, address, alive = alive_](Result<auth_lookup::Resolution> resolution) {
        if (!*alive) return;
        Attempt& attempt = job->attempts[a];
        if (!resolution) {
            attempt.kind = Attempt::Kind::done;
            attempt.outcome = outcome(RecipientState::deferred, "4.3.0", "directory lookup failed: " + resolution.error());
        } else {
            take_local(attempt, address, *resolution, job->envelope.expansion_depth, settings_.max_expansion_depth);
        }
        if (--job->lookups_outstanding == 0) resolved(job);
    });
}

void QueueManager::resolved(const std::shared_ptr<Job>& job) { deliver(job); }

void QueueManager::deliver(const std::shared_ptr<Job>& job) {
    delivery::Request request;
    request.queue_id = job->id;
    request.queue_file = job->path;
    request.sender = job->envelope.sender;
    std::vector<size_t> sent_attempts;
    // Recipients of one message with the same next hop travel together.
    std::map<std::string, std::vector<size_t>> relay_groups;
    for (size_t a = 0; a < job->attempts.size(); ++a) {
        const Attempt& attempt = job->attempts[a];
        if (attempt.kind == Attempt::Kind::relay) relay_groups[attempt.nexthop.text()].push_back(a);
        if (attempt.kind != Attempt::Kind::mailbox && attempt.kind != Attempt::Kind::pipe) continue;
        request.targets.push_back(attempt.target);
        sent_attempts.push_back(a);
    }
    job->calls_outstanding = relay_groups.size() + (request.targets.empty() ? 0 : 1);
    if (job->calls_outstanding == 0) {
        record(job);
        return;
    }
    for (auto& [hop, attempts] : relay_groups) relay(job, attempts);
    if (request.targets.empty()) return;
    deliverd_.call(delivery::encode_request(request), [this, job, sent_attempts, alive = alive_](Result<ipc::Frame> reply) {
        if (!*alive) return;
        Result<std::vector<delivery::TargetResult>> results =
            reply ? delivery::decode_reply(*reply, sent_attempts.size())
                  : Result<std::vector<delivery::TargetResult>>(make_error(reply.error()));
        for (size_t k = 0; k < sent_attempts.size(); ++k) {
            Attempt& attempt = job->attempts[sent_attempts[k]];
            if (!results) {
                attempt.outcome = outcome(RecipientState::deferred, "4.3.0", "deliverd: " + results.error());
                continue;
            }
            const delivery::TargetResult& result = (*results)[k];
            attempt.outcome = outcome(state_of(result.outcome), result.dsn, result.reason);
        }
        if (!results) log::warning("{}: delivery deferred: deliverd: {}", job->id, results.error());
        call_done(job);
    });
}

void QueueManager::relay(const std::shared_ptr<Job>& job, const std::vector<size_t>& attempts) {
    relay::Request request;
    request.queue_id = job->id;
    request.queue_file = job->path;
    request.nexthop = job->attempts[attempts.front()].nexthop;
    for (size_t a : attempts) request.recipients.push_back(job->attempts[a].index);
    if (job->relay_calls++ == 0) ++relay_jobs_;
    relayd_.call(relay::encode_request(request), [this, job, attempts, hop = request.nexthop.text(),
                                                  alive = alive_](Result<ipc::Frame> reply) {
        if (!*alive) return;
        auto results = reply ? relay::decode_reply(*reply, attempts.size())
                             : Result<std::vector<relay::RecipientResult>>(make_error(reply.error()));
        if (!results) log::warning("{}: delivery via {} deferred: relayd: {}", job->id, hop, results.error());
        for (size_t k = 0; k < attempts.size(); ++k) {
            Attempt& attempt = job->attempts[attempts[k]];
            if (!results) {
                attempt.outcome = outcome(RecipientState::deferred, "4.3.0", "relayd: " + results.error());
                log::info("{}: to=<{}>, nexthop={}, relay=none, dsn=4.3.0, status=deferred (relayd: {})", job->id,
                          log::printable(job->envelope.recipients[attempt.index].address), hop,
                          log::printable(results.error()));
                continue;
            }
            const relay::RecipientResult& result = (*results)[k];
            attempt.outcome = outcome(state_of(result.outcome), result.dsn, result.reason);
            attempt.outcome.relay = result.relay == "none" ? "" : result.relay;
            attempt.outcome.remote_dsn = result.remote_dsn;
        }
        if (--job->relay_calls == 0) --relay_jobs_;
        call_done(job);
    });
}

void QueueManager::call_done(const std::shared_ptr<Job>& job) {
    if (--job->calls_outstanding == 0) record(job);
}

bool QueueManager::all_waiting_on_relayd() const { return !in_flight_.empty() && in_flight_.size() == relay_jobs_; }

void QueueManager::record(const std::shared_ptr<Job>& job) {
    RecordPlan plan;
    plan.spool = spool_;
    plan.settings = settings_;
    plan.id = job->id;
    plan.path = job->path;
    plan.envelope = job->envelope;
    plan.before = job->status;
    for (const Attempt& attempt : job->attempts) {
        if (attempt.kind == Attempt::Kind::expand) {
            plan.expansions.emplace_back(attempt.index, attempt.expansion);
            plan.outcomes.emplace_back(attempt.index, RecipientStatus{});
        } else {
            plan.outcomes.emplace_back(attempt.index, attempt.outcome);
        }
    }
    // Outcomes qmgr decided itself are logged here; deliverd logs its own.
    for (const Attempt& attempt : job->attempts) {
        if (attempt.kind != Attempt::Kind::done) continue;
        log::info("{}: to=<{}>, relay=none, dsn={}, status={} ({})", job->id,
                  log::printable(job->envelope.recipients[attempt.index].address), attempt.outcome.dsn,
                  queue::recipient_state_name(attempt.outcome.state), log::printable(attempt.outcome.reason));
    }
    pool_.submit<RecordResult>([plan = std::move(plan)]() mutable { return carry_out(std::move(plan)); },
                               [this, job, alive = alive_](RecordResult result) {
                                   if (!*alive) return;
                                   for (const auto& [index, status] : result.outcomes) {
                                       if (status.state == RecipientState::expanded ||
                                           status.dsn == "4.4.7")
                                           log::info("{}: to=<{}>, relay=none, dsn={}, status={} ({})", job->id,
                                                     log::printable(job->envelope.recipients[index].address), status.dsn,
                                                     queue::recipient_state_name(status.state),
                                                     log::printable(status.reason));
                                   }
                                   if (!result.report_id.empty())
                                       log::info("{}: sender delivery status notification: {}", job->id, result.report_id);
                                   if (!result.warning_id.empty())
                                       log::info("{}: sender delay notification: {}", job->id, result.warning_id);
                                   if (result.report_discarded)
                                       log::info("{}: undeliverable message with the null sender discarded", job->id);
                                   Pending pending = Pending::none;
                                   if (auto it = in_flight_.find(job->id); it != in_flight_.end()) pending = it->second;
                                   switch (result.disposition) {
                                   case RecordResult::Disposition::removed:
                                       log::info("{}: removed", job->id);
                                       break;
                                   case RecordResult::Disposition::deferred:
                                       if (pending == Pending::remove) {
                                           unlink(spool_.file_path(queue::Folder::deferred, job->id).c_str());
                                           unlink(spool_.log_path(job->id).c_str());
                                           log::info("{}: removed by the administrator", job->id);
                                       } else if (pending == Pending::hold) {
                                           if (Status s = spool_.move(job->id, queue::Folder::deferred, queue::Folder::hold); s)
                                               waiting_[job->id] = Entry{queue::Folder::hold, 0};
                                           log::info("{}: put on hold by the administrator", job->id);
                                       } else {
                                           schedule_deferred(job->id, result.next_attempt);
                                       }
                                       break;
                                   case RecordResult::Disposition::failed:
                                       // Left in active/: picked up again after a restart; retry
                                       // here after the minimal backoff via deferred/.
                                       log::error("{}: {}", job->id, result.error);
                                       if (Status s = spool_.move(job->id, queue::Folder::active, queue::Folder::deferred); s)
                                           schedule_deferred(job->id, now_seconds() + settings_.minimal_backoff);
                                       break;
                                   }
                                   if (!result.new_files.empty()) incoming_dirty_ = true;
                                   finished(job->id);
                               });
}

void QueueManager::convert_maildrop(const std::string& id) {
    in_flight_[id] = Pending::none;
    struct Conversion {
        bool ok = false;
        std::string error;
    };
    pool_.submit<Conversion>(
        [spool = spool_, id, limit = settings_.message_size_limit, hostname = settings_.hostname]() -> Conversion {
            Conversion result;
            std::string path = spool.file_path(queue::Folder::maildrop, id);
            struct stat info {};
            if (lstat(path.c_str(), &info) != 0) {
                result.error = "vanished";
                return result;
            }
            auto reader = queue::Reader::open(path);
            std::string problem;
            queue::Envelope envelope;
            if (!reader) {
                problem = reader.error();
            } else {
                envelope = reader->envelope();
                // What a local user wrote is checked like SMTP input: the
                // file's owner is who sent it, recipients are addresses.
                if (envelope.submitter_uid != static_cast<int64_t>(info.st_uid))
                    problem = fmt::format("submitter uid {} does not own the file (uid {})", envelope.submitter_uid,
                                          info.st_uid);
                if (reader->message_size() > limit) problem = "message larger than message_size_limit";
                for (const queue::Recipient& recipient : envelope.recipients) {
                    auto path = address::parse_path("<" + recipient.address + ">", {false, true, true});
                    if (!path || path->domain.empty()) problem = "bad recipient " + log::printable(recipient.address);
                }
                if (!envelope.sender.empty()) {
                    auto sender = address::parse_path("<" + envelope.sender + ">", {false, true, false});
                    if (!sender) problem = "bad sender " + log::printable(envelope.sender);
                }
            }
            if (!problem.empty()) {
                result.error = problem;
                if (Status s = spool.move(id, queue::Folder::maildrop, queue::Folder::corrupt); !s) {
                    log::error("{}: {}", id, s.error());
                    unlink(path.c_str());
                }
                return result;
            }
            envelope.protocol = "local";
            envelope.client_address = "local";
            envelope.expansion_depth = 0;
            envelope.arrival_time = envelope.arrival_time > 0 ? envelope.arrival_time : static_cast<int64_t>(time(nullptr));
            auto writer = queue::Writer::create(spool, queue::Folder::incoming, id);
            if (!writer) {
                result.error = writer.error();
                return result;
            }
            Status copied;
            if (Status s = reader->read_message([&](std::string_view chunk) {
                    copied = writer->append(chunk);
                    return bool(copied);
                });
                !s || !copied) {
                result.error = !s ? s.error() : copied.error();
                return result;
            }
            if (Status s = writer->commit(std::move(envelope)); !s) {
                result.error = s.error();
                return result;
            }
            // The copy in incoming/ is durable: the drop can go.
            unlink(path.c_str());
            result.ok = true;
            return result;
        },
        [this, id, alive = alive_](Conversion result) {
            if (!*alive) return;
            if (result.ok) {
                log::info("{}: picked up from maildrop", id);
                incoming_dirty_ = true;
            } else if (result.error != "vanished") {
                log::warning("{}: maildrop file refused: {}", id, result.error);
            }
            finished(id);
        });
}

}  // namespace facteur::qmgr
