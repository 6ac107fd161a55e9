// Coalesced qmgr wake-ups over the qmgr socket (see qmgr_wakeup.hpp).
#include "smtpd/qmgr_wakeup.hpp"

#include <chrono>

#include "libmail/log.hpp"
#include "libmail/queue_control.hpp"

namespace facteur::smtpd {

QmgrWakeup::QmgrWakeup(event::Loop& loop, std::string socket_path)
    : client_(loop, std::move(socket_path), std::chrono::seconds(10)) {}

void QmgrWakeup::wake() {
    if (in_flight_) {
        again_ = true;
        return;
    }
    send();
}

void QmgrWakeup::send() {
    in_flight_ = true;
    again_ = false;
    std::weak_ptr<bool> alive = alive_;
    client_.call(queue_control::request(queue_control::Op::wakeup), [this, alive](Result<ipc::Frame> reply) {
        if (alive.expired()) return;
        in_flight_ = false;
        if (!reply) {
            // Only a hint: qmgr's periodic scan finds the message anyway.
            if (!warned_) log::warning("cannot wake qmgr: {} (it will find the mail on its next scan)", reply.error());
            warned_ = true;
        } else {
            warned_ = false;
        }
        if (again_) send();
    });
}

void QmgrWakeup::flush(std::string_view domain, bool subdomains, std::function<void(Result<uint64_t>)> done) {
    std::weak_ptr<bool> alive = alive_;
    client_.call(queue_control::flush_request(domain, subdomains),
                 [alive, done = std::move(done)](Result<ipc::Frame> reply) {
                     if (alive.expired()) return;
                     if (!reply) return done(make_error(reply.error()));
                     auto count = queue_control::decode_count_reply(*reply);
                     if (!count) return done(make_error(count.error()));
                     done(*count);
                 });
}

}  // namespace facteur::smtpd
