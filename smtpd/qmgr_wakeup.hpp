// Wakes qmgr after a message was queued (DESIGN §4: a cheap hint, never the
// only path; qmgr rescans the spool on a timer). Wake-ups are coalesced:
// at most one request in flight, and one more after it if mail kept coming.
#pragma once

#include <memory>
#include <string>

#include "libmail/event.hpp"
#include "libmail/ipc.hpp"

namespace facteur::smtpd {

class QmgrWakeup {
public:
    QmgrWakeup(event::Loop& loop, std::string socket_path);
    void wake();

private:
    void send();
    ipc::AsyncClient client_;
    bool in_flight_ = false;
    bool again_ = false;
    bool warned_ = false;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace facteur::smtpd
