// Admin socket: peer check, one log line per change, then directory_admin.
#include "authd/admin_service.hpp"

#include "libmail/directory_admin.hpp"
#include "libmail/log.hpp"

namespace facteur::authd {

AdminService::AdminService(directory::UserDatabase& database, uid_t self) : database_(database), self_(self) {}

bool AdminService::allow(const ipc::PeerCredentials& peer) const {
    if (peer.uid == 0 || peer.uid == self_) return true;
    log::warning("admin: refused peer pid={} uid={} gid={}", peer.pid, peer.uid, peer.gid);
    return false;
}

ipc::Frame AdminService::handle(const ipc::Frame& request, const ipc::PeerCredentials& peer) {
    ipc::Frame reply = directory_admin::serve(database_, request);
    auto op = request.get("op");
    auto status = reply.get("status");
    auto error = reply.get("error");
    // Names what changed, never a password hash or APOP secret.
    auto subject = request.get("address");
    if (!subject) subject = request.get("domain");
    log::info("admin: uid={} pid={} op={} {}status={}{}", peer.uid, peer.pid, op ? log::printable(*op, 32) : "-",
              subject ? fmt::format("subject=<{}> ", log::printable(*subject)) : std::string(),
              status ? log::printable(*status, 16) : "-",
              error ? fmt::format(" error=\"{}\"", log::printable(*error)) : std::string());
    return reply;
}

}  // namespace facteur::authd
