// Wakes qmgr after a message was queued (DESIGN §4: a cheap hint, never the
// only path; qmgr rescans the spool on a timer). Wake-ups are coalesced:
// at most one request in flight, and one more after it if mail kept coming.
// ETRN's flush requests travel on the same connection.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "libmail/event.hpp"
#include "libmail/ipc.hpp"

namespace facteur::smtpd {

class QmgrWakeup {
public:
    QmgrWakeup(event::Loop& loop, std::string socket_path);
    void wake();
    // ETRN (RFC 1985): asks qmgr to retry now the deferred mail for
    // `domain` (and its subdomains); `done` gets how many messages that is,
    // or why qmgr could not be asked. Runs from the loop, never from here.
    void flush(std::string_view domain, bool subdomains, std::function<void(Result<uint64_t>)> done);

private:
    void send();
    ipc::AsyncClient client_;
    bool in_flight_ = false;
    bool again_ = false;
    bool warned_ = false;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace facteur::smtpd
