// Turns a relay request into a scheduler job: the envelope comes from the
// queue file itself (qmgr only says which recipients go to which next hop).
#include "relayd/service.hpp"

#include <fmt/format.h>

#include "libmail/log.hpp"
#include "libmail/queue.hpp"

namespace facteur::relayd {

void Service::handle(const ipc::Frame& frame, std::function<void(const ipc::Frame&)> respond) {
    auto request = relay::decode_request(frame);
    if (!request) {
        log::warning("bad request from qmgr: {}", request.error());
        respond(ipc::error_reply(request.error()));
        return;
    }
    auto reader = queue::Reader::open(request->queue_file);
    if (!reader) {
        // qmgr keeps the message; it retries later.
        std::string why = fmt::format("cannot read queue file {}: {}", request->queue_file, reader.error());
        log::warning("{}: {}", request->queue_id, why);
        respond(ipc::error_reply(why));
        return;
    }
    Job job;
    job.envelope = reader->envelope();
    if (job.envelope.message_size == 0) job.envelope.message_size = reader->message_size();
    for (size_t index : request->recipients) {
        if (index >= job.envelope.recipients.size()) {
            respond(ipc::error_reply(fmt::format("recipient index {} is not in {}", index, request->queue_file)));
            return;
        }
    }
    job.request = std::move(request).value();
    scheduler_.relay(std::move(job), [respond = std::move(respond)](std::vector<relay::RecipientResult> results) {
        respond(relay::encode_reply(results));
    });
}

}  // namespace facteur::relayd
