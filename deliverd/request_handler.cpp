// One delivery request from qmgr: queue file opened and targets delivered on
// the worker pool, outcomes logged and gathered into the reply.
#include "deliverd/request_handler.hpp"

#include <chrono>
#include <string>
#include <vector>

#include "libmail/delivery_protocol.hpp"
#include "libmail/log.hpp"
#include "libmail/queue.hpp"

namespace facteur::deliverd {
namespace {

using ReaderPointer = std::shared_ptr<const queue::Reader>;

// Everything one request's deliveries share. Only the loop thread touches
// `results`, `remaining` and `respond` (in the pool's `done` callbacks);
// workers see the const parts.
struct Batch {
    std::shared_ptr<const delivery::Request> request;
    ReaderPointer reader;
    std::shared_ptr<const AgentSettings> settings;
    std::vector<delivery::TargetResult> results;
    size_t remaining = 0;
    ipc::Server::Responder respond;
};

double seconds_since(int64_t arrival) {
    using namespace std::chrono;
    double now = duration<double>(system_clock::now().time_since_epoch()).count();
    double delay = now - static_cast<double>(arrival);
    return delay < 0 ? 0 : delay;
}

// Postfix style, so admins can grep a message's life by its queue id:
// "ID: to=<bob@example.test>, relay=local, delay=0.12, dsn=2.0.0, status=sent (delivered to maildir)".
void log_outcome(const Batch& batch, const delivery::Target& target, const delivery::TargetResult& result) {
    std::string orig_to = target.kind == delivery::Kind::pipe && !target.alias.empty()
                              ? fmt::format(", orig_to=<{}>", log::printable(target.alias))
                              : std::string();
    log::info("{}: to=<{}>{}, relay=local, delay={:.2f}, dsn={}, status={} ({})", batch.request->queue_id,
              log::printable(target.recipient), orig_to, seconds_since(batch.reader->envelope().arrival_time),
              result.dsn, delivery::outcome_name(result.outcome), log::printable(result.reason, 512));
}

void deliver_all(event::WorkerPool& pool, std::shared_ptr<Batch> batch) {
    size_t count = batch->request->targets.size();
    batch->results.resize(count);
    batch->remaining = count;
    for (size_t i = 0; i < count; ++i) {
        // The job holds only immutable shared state: it runs on a worker.
        pool.submit<delivery::TargetResult>(
            [request = batch->request, reader = batch->reader, settings = batch->settings, i] {
                return deliver_target(*reader, request->sender, request->targets[i], *settings);
            },
            [batch, i](delivery::TargetResult result) {
                log_outcome(*batch, batch->request->targets[i], result);
                batch->results[i] = std::move(result);
                if (--batch->remaining == 0) batch->respond(delivery::encode_reply(batch->results));
            });
    }
}

}  // namespace

RequestHandler::RequestHandler(event::WorkerPool& pool, AgentSettings settings)
    : pool_(pool), settings_(std::make_shared<const AgentSettings>(std::move(settings))) {}

void RequestHandler::set_settings(AgentSettings settings) {
    settings_ = std::make_shared<const AgentSettings>(std::move(settings));
}

void RequestHandler::handle(const ipc::Frame& frame, ipc::Server::Responder respond) {
    auto decoded = delivery::decode_request(frame);
    if (!decoded) {
        log::warning("refused delivery request: {}", log::printable(decoded.error()));
        respond(ipc::error_reply(decoded.error()));
        return;
    }
    auto batch = std::make_shared<Batch>();
    batch->request = std::make_shared<const delivery::Request>(std::move(decoded).value());
    batch->settings = settings_;
    batch->respond = std::move(respond);

    // Opening validates the whole queue file: blocking I/O, so on the pool.
    event::WorkerPool& pool = pool_;
    pool_.submit<Result<ReaderPointer>>(
        [request = batch->request]() -> Result<ReaderPointer> {
            auto reader = queue::Reader::open(request->queue_file);
            if (!reader) return make_error(fmt::format("cannot open queue file {}: {}", request->queue_file, reader.error()));
            if (reader->envelope().queue_id != request->queue_id)
                return make_error(fmt::format("queue file {} holds message {}, not {}", request->queue_file,
                                              reader->envelope().queue_id, request->queue_id));
            return std::make_shared<const queue::Reader>(std::move(reader).value());
        },
        [&pool, batch](Result<ReaderPointer> opened) {
            if (!opened) {
                log::warning("{}: {}", batch->request->queue_id, log::printable(opened.error(), 512));
                batch->respond(ipc::error_reply(opened.error()));
                return;
            }
            batch->reader = std::move(opened).value();
            deliver_all(pool, batch);
        });
}

bool peer_allowed(const ipc::PeerCredentials& peer, const std::set<uid_t>& allowed) {
    return allowed.count(peer.uid) > 0;
}

}  // namespace facteur::deliverd
