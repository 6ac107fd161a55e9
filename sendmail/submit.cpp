// Queueing a message from standard input into maildrop/ (sendmail/submit.hpp).
#include "sendmail/submit.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <ctime>
#include <optional>

#include <fmt/format.h>

#include "libmail/address.hpp"
#include "libmail/daemon.hpp"
#include "libmail/log.hpp"
#include "libmail/queue.hpp"
#include "libmail/queue_control.hpp"
#include "libmail/system.hpp"
#include "libmail/unique_fd.hpp"
#include "sendmail/message_input.hpp"
#include "sendmail/submission_header.hpp"

namespace facteur::sendmail {
namespace {

constexpr size_t kReadSize = 64 * 1024;
// A header section is a few kilobytes; this bound keeps it in memory safely
// while the body streams straight to the queue file.
constexpr size_t kMaxHeader = 1024 * 1024;
// A lost wake-up only delays delivery, so sendmail does not wait long.
constexpr auto kWakeupTimeout = std::chrono::seconds(2);

Outcome failure(int code, std::string message) { return Outcome{code, std::move(message), {}}; }

bool has_eight_bit(std::string_view text) {
    return std::any_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

// Everything the header decides, done once the header section is complete.
struct Prepared {
    std::vector<std::string> recipients;
    std::string header;
};

class Submission {
public:
    Submission(const Options& options, const config::Config& config, const Submitter& submitter)
        : options_(options), config_(config), submitter_(submitter),
          limit_(config.size("", "message_size_limit")), splitter_(std::min<uint64_t>(kMaxHeader, limit_)),
          normalizer_(options.ignore_dots) {}

    Outcome run(int input_fd) {
        auto hostname = daemon::host_name(config_);
        if (!hostname) return failure(EX_CONFIG, hostname.error());
        hostname_ = std::move(hostname).value();

        auto sender = envelope_sender(options_.sender, submitter_.login, hostname_);
        if (!sender) return failure(EX_USAGE, sender.error());
        sender_ = std::move(sender).value();
        for (const std::string& operand : options_.recipients) {
            auto addresses = parse_recipient_argument(operand, hostname_);
            if (!addresses) return failure(EX_USAGE, addresses.error());
            if (Status s = add_recipients(recipients_, *addresses); !s) return failure(EX_USAGE, s.error());
        }
        // Without -t the recipients are known now: fail before reading a
        // message nobody would receive.
        if (!options_.extract_recipients && recipients_.empty()) return failure(EX_USAGE, "no recipients");

        if (Outcome read = read_input(input_fd); read.exit_code != EX_OK) return read;
        if (!writer_) return failure(EX_SOFTWARE, "no message was prepared");

        queue::Envelope envelope;
        envelope.queue_id = writer_->queue_id();
        envelope.sender = sender_;
        bool utf8_address = has_eight_bit(sender_);
        for (const std::string& address : recipients_) {
            envelope.recipients.push_back({address, "", options_.notify});
            utf8_address = utf8_address || has_eight_bit(address);
        }
        envelope.envid = options_.envid;
        envelope.ret = options_.ret;
        envelope.body = options_.body.value_or(eight_bit_ ? queue::BodyType::eight_bit_mime : queue::BodyType::seven_bit);
        envelope.smtputf8 = utf8_address;  // RFC 6531: non-ASCII addresses need SMTPUTF8
        envelope.arrival_time = static_cast<int64_t>(now_);
        envelope.client_address = "local";
        envelope.protocol = "local";
        envelope.auth_user = submitter_.login;
        envelope.submitter_uid = static_cast<int64_t>(submitter_.uid);
        std::string queue_id = writer_->queue_id();
        if (Status s = writer_->commit(std::move(envelope)); !s)
            return failure(EX_TEMPFAIL, fmt::format("cannot queue the message: {}", s.error()));

        // The file is durable in maildrop/: from here on the mail is queued
        // whatever happens to the wake-up.
        auto reply = queue_control::call(config_.path("qmgr_socket"), queue_control::request(queue_control::Op::wakeup),
                                         kWakeupTimeout);
        Outcome outcome;
        outcome.queue_id = queue_id;
        if (!reply) outcome.message = fmt::format("{}; the message waits in maildrop/ for qmgr's next scan", reply.error());
        return outcome;
    }

private:
    Outcome read_input(int input_fd) {
        std::string buffer(kReadSize, '\0');
        std::string normalized;
        bool end_of_input = false;
        while (!end_of_input) {
            ssize_t n = read(input_fd, buffer.data(), buffer.size());
            if (n < 0) {
                if (errno == EINTR) continue;
                return failure(EX_IOERR, fmt::format("cannot read the message: {}", system::errno_text(errno)));
            }
            normalized.clear();
            if (n == 0) {
                normalizer_.finish(normalized);
                end_of_input = true;
            } else if (normalizer_.feed(std::string_view(buffer.data(), static_cast<size_t>(n)), normalized)) {
                end_of_input = true;  // the "." line; whatever follows is not ours
            }
            if (Outcome out = take(normalized); out.exit_code != EX_OK) return out;
        }
        splitter_.finish();
        return drain();
    }

    // Normalized text in: counted against the limit, then header or body.
    Outcome take(std::string_view text) {
        size_ += text.size();
        if (size_ > limit_)
            return failure(EX_CANTCREAT, fmt::format("message too large: the limit is {} bytes (message_size_limit)", limit_));
        eight_bit_ = eight_bit_ || has_eight_bit(text);
        if (Status s = splitter_.feed(text); !s) return failure(EX_DATAERR, s.error());
        return drain();
    }

    Outcome drain() {
        if (!splitter_.header_complete()) return {};
        if (!writer_) {
            if (Outcome out = start_file(); out.exit_code != EX_OK) return out;
        }
        std::string body = splitter_.take_body();
        if (!body.empty()) {
            if (Status s = writer_->append(body); !s)
                return failure(EX_TEMPFAIL, fmt::format("cannot queue the message: {}", s.error()));
        }
        return {};
    }

    // The header is complete: settle the recipients, then write the header.
    Outcome start_file() {
        const std::string& header = splitter_.header();
        if (options_.extract_recipients) {
            auto addresses = header_recipients(header, hostname_);
            if (!addresses) return failure(EX_DATAERR, addresses.error());
            if (Status s = add_recipients(recipients_, *addresses); !s) return failure(EX_DATAERR, s.error());
        }
        if (recipients_.empty()) return failure(EX_USAGE, "no recipients");

        auto writer = queue::Writer::create(queue::Spool(config_.path("spool_dir")), queue::Folder::maildrop,
                                            queue::new_queue_id(), kMaildropFileMode);
        if (!writer) return failure(EX_TEMPFAIL, fmt::format("cannot queue the message: {}", writer.error()));
        writer_.emplace(std::move(writer).value());

        now_ = std::time(nullptr);
        HeaderContext context;
        context.queue_id = writer_->queue_id();
        context.hostname = hostname_;
        context.login = submitter_.login;
        // A bounce (null sender) still needs an author: the user.
        context.from_address = sender_.empty() ? fmt::format("{}@{}", submitter_.login, hostname_) : sender_;
        context.full_name = options_.full_name.empty() ? submitter_.gecos_name : options_.full_name;
        context.now = now_;
        // The empty line ends the header even when the input had none
        // before its first body line.
        std::string header_text = rewrite_header(header, context) + "\r\n";
        if (Status s = writer_->append(header_text); !s)
            return failure(EX_TEMPFAIL, fmt::format("cannot queue the message: {}", s.error()));
        return {};
    }

    // qmgr (the mail owner) must read what a user dropped; maildrop/ is not
    // listable, and qmgr moves the file on at once.
    static constexpr mode_t kMaildropFileMode = 0644;

    const Options& options_;
    const config::Config& config_;
    const Submitter& submitter_;
    uint64_t limit_;
    HeaderSplitter splitter_;
    LineNormalizer normalizer_;
    std::string hostname_;
    std::string sender_;
    std::vector<std::string> recipients_;
    std::optional<queue::Writer> writer_;
    uint64_t size_ = 0;
    bool eight_bit_ = false;
    std::time_t now_ = 0;
};

}  // namespace

Submitter current_submitter() {
    Submitter submitter;
    submitter.uid = getuid();
    long suggested = sysconf(_SC_GETPW_R_SIZE_MAX);
    std::string buffer(suggested > 0 ? static_cast<size_t>(suggested) : 16384, '\0');
    passwd entry{};
    passwd* found = nullptr;
    int rc;
    while ((rc = getpwuid_r(submitter.uid, &entry, buffer.data(), buffer.size(), &found)) == ERANGE &&
           buffer.size() < (1u << 20))
        buffer.resize(buffer.size() * 2);
    if (rc == 0 && found != nullptr && found->pw_name && *found->pw_name) {
        submitter.login = found->pw_name;
        std::string_view gecos = found->pw_gecos ? found->pw_gecos : "";
        submitter.gecos_name = std::string(gecos.substr(0, gecos.find(',')));
    } else {
        // No passwd entry (containers): still a stable, valid local part.
        submitter.login = fmt::format("uid{}", submitter.uid);
    }
    return submitter;
}

Outcome submit(const Options& options, const config::Config& config, const Submitter& submitter, int input_fd) {
    return Submission(options, config, submitter).run(input_fd);
}

}  // namespace facteur::sendmail
