// mailq, sendmail -q and newaliases (sendmail/admin_modes.hpp).
#include "sendmail/admin_modes.hpp"

#include <fcntl.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include <fmt/format.h>

#include "libmail/directory.hpp"
#include "libmail/queue_control.hpp"
#include "libmail/queue_listing.hpp"
#include "libmail/system.hpp"
#include "libmail/unique_fd.hpp"

namespace facteur::sendmail {
namespace {

// Same bound as authd's: an aliases file is kilobytes; anything huge is a
// mistake, not something to load.
constexpr size_t kMaxAliasFile = 16 * 1024 * 1024;

int complain(const Options& options, int code, std::string_view message) {
    fmt::print(stderr, "{}: {}\n", options.program, message);
    return code;
}

// qmgr's refusal of a non-privileged user is a permission problem, not an outage.
int qmgr_error_code(std::string_view error) {
    return error.find("permission denied") != std::string_view::npos ? EX_NOPERM : EX_UNAVAILABLE;
}

Result<std::string> read_bounded(const std::string& path) {
    return system::read_file(path, kMaxAliasFile);
}

}  // namespace

int print_queue(const Options& options, const config::Config& config) {
    auto reply = queue_control::call(config.path("qmgr_socket"), queue_control::request(queue_control::Op::list));
    if (!reply) return complain(options, EX_UNAVAILABLE, fmt::format("cannot list the queue: {}", reply.error()));
    auto listing = queue_control::decode_list_reply(*reply);
    if (!listing) return complain(options, qmgr_error_code(listing.error()), listing.error());
    fmt::print("{}", queue_listing::format_text(*listing));
    return std::fflush(stdout) == 0 ? EX_OK : EX_IOERR;
}

int flush_queue(const Options& options, const config::Config& config) {
    auto reply = queue_control::call(config.path("qmgr_socket"), queue_control::request(queue_control::Op::flush));
    if (!reply) return complain(options, EX_UNAVAILABLE, fmt::format("cannot flush the queue: {}", reply.error()));
    auto count = queue_control::decode_count_reply(*reply);
    if (!count) return complain(options, qmgr_error_code(count.error()), fmt::format("cannot flush the queue: {}", count.error()));
    if (options.verbose > 0)
        fmt::print(stderr, "{}: {} deferred message{} retried now\n", options.program, *count, *count == 1 ? "" : "s");
    return EX_OK;
}

int new_aliases(const Options& options, const config::Config& config) {
    std::string path = config.path("alias_file");
    if (path.empty()) return complain(options, EX_CONFIG, "alias_file is empty in facteur.conf: no aliases file to check");
    auto text = read_bounded(path);
    if (!text) return complain(options, EX_NOINPUT, text.error());
    auto aliases = directory::parse_aliases_file(*text);
    if (!aliases) return complain(options, EX_DATAERR, fmt::format("{}: {}", path, aliases.error()));
    // facteur keeps no compiled alias database: authd reads the text file
    // itself, at start and on reload.
    fmt::print("{}: {} alias{}, no errors; authd reads this file when it starts and on `facteur reload`\n", path,
               aliases->size(), aliases->size() == 1 ? "" : "es");
    return std::fflush(stdout) == 0 ? EX_OK : EX_IOERR;
}

}  // namespace facteur::sendmail
