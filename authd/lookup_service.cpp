// Lookup socket request handling: decode with auth_lookup::serve, answer on
// the loop (user and resolve) or after the password check (verify, apop).
#include "authd/lookup_service.hpp"

#include "libmail/auth_lookup.hpp"
#include "libmail/log.hpp"

namespace facteur::authd {

LookupService::LookupService(directory::UserDatabase& database, PasswordChecker& checker, std::string mail_dir,
                             std::set<uid_t> allowed, std::set<uid_t> privileged)
    : database_(database),
      checker_(checker),
      mail_dir_(std::move(mail_dir)),
      allowed_(std::move(allowed)),
      privileged_(std::move(privileged)) {}

bool LookupService::allow(const ipc::PeerCredentials& peer) const {
    if (allowed_.count(peer.uid) != 0) return true;
    log::warning("lookup: refused peer pid={} uid={} gid={}", peer.pid, peer.uid, peer.gid);
    return false;
}

void LookupService::handle(const ipc::Frame& request, const ipc::PeerCredentials& peer,
                           ipc::Server::Responder respond) {
    auto op = auth_lookup::serve::op(request);
    if (!op) {
        auto name = request.get("op");
        log::warning("lookup: uid={} {} \"{}\"", peer.uid, op.error(), name ? log::printable(*name, 32) : "");
        return respond(auth_lookup::serve::error_reply(op.error()));
    }
    bool privileged = privileged_.count(peer.uid) != 0;
    switch (*op) {
    case auth_lookup::Op::verify: return verify(request, std::move(respond));
    case auth_lookup::Op::apop: return apop(request, std::move(respond));
    case auth_lookup::Op::user: return respond(find_user(request, privileged));
    case auth_lookup::Op::resolve: return respond(resolve(request, privileged));
    }
}

void LookupService::verify(const ipc::Frame& request, ipc::Server::Responder respond) {
    auto decoded = auth_lookup::serve::verify(request);
    if (!decoded) return respond(auth_lookup::serve::error_reply(decoded.error()));
    CheckRequest check;
    check.user = std::move(decoded->user);
    check.password = std::move(decoded->password);
    check.service = decoded->service.empty() ? "lookup" : std::move(decoded->service);
    check.client_ip = std::move(decoded->client_ip);
    check.mechanism = "PLAIN";
    checker_.check(std::move(check), [respond](CheckResult result) {
        respond(auth_lookup::serve::verify_reply(result));
    });
}

void LookupService::apop(const ipc::Frame& request, ipc::Server::Responder respond) {
    auto decoded = auth_lookup::serve::apop(request);
    if (!decoded) return respond(auth_lookup::serve::error_reply(decoded.error()));
    CheckRequest check;
    check.user = std::move(decoded->user);
    check.service = decoded->service.empty() ? "pop3" : std::move(decoded->service);
    check.client_ip = std::move(decoded->client_ip);
    check.mechanism = "APOP";
    check.apop = true;
    check.apop_timestamp = std::move(decoded->timestamp);
    check.apop_digest = std::move(decoded->digest);
    checker_.check(std::move(check), [respond](CheckResult result) {
        respond(auth_lookup::serve::verify_reply(result));
    });
}

ipc::Frame LookupService::find_user(const ipc::Frame& request, bool privileged) {
    auto user = auth_lookup::serve::user(request);
    if (!user) return auth_lookup::serve::error_reply(user.error());
    // A name that is not local@domain names nobody.
    if (!directory::split_address(*user)) return auth_lookup::serve::user_reply(std::nullopt);
    auto found = database_.find_user(*user);
    if (!found) {
        log::error("lookup: user=<{}> database: {}", log::printable(*user), found.error());
        return auth_lookup::serve::tempfail_reply("temporary server failure");
    }
    if (!found->has_value()) return auth_lookup::serve::user_reply(std::nullopt);
    return auth_lookup::serve::user_reply(auth_lookup::user_info(**found, mail_dir_, privileged));
}

ipc::Frame LookupService::resolve(const ipc::Frame& request, bool privileged) {
    auto address = auth_lookup::serve::address(request);
    if (!address) return auth_lookup::serve::error_reply(address.error());
    if (auto split = directory::split_address(*address); !split)
        return auth_lookup::serve::error_reply(split.error());
    auto resolved = database_.resolve(*address);
    if (!resolved) {
        log::error("lookup: resolve <{}>: {}", log::printable(*address), resolved.error());
        return auth_lookup::serve::tempfail_reply(resolved.error());
    }
    auth_lookup::Resolution resolution;
    switch (resolved->kind) {
    case directory::Resolution::local_user:
        resolution.kind = auth_lookup::RecipientKind::local_user;
        resolution.user = auth_lookup::user_info(*resolved->user, mail_dir_, privileged);
        break;
    case directory::Resolution::alias:
        resolution.kind = auth_lookup::RecipientKind::alias;
        resolution.targets = std::move(resolved->targets);
        break;
    case directory::Resolution::unknown_local: resolution.kind = auth_lookup::RecipientKind::unknown_local; break;
    case directory::Resolution::remote: resolution.kind = auth_lookup::RecipientKind::remote; break;
    }
    return auth_lookup::serve::resolve_reply(resolution);
}

}  // namespace facteur::authd
