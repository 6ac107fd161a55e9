// The mail queue on disk: ids, folders, queue files and status logs
// (DESIGN §3). Every file operation that makes mail durable fsyncs.
#include "libmail/queue.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <mutex>

#include <fmt/format.h>

#include "libmail/ipc.hpp"
#include "libmail/log.hpp"
#include "libmail/system.hpp"

namespace facteur::queue {
namespace {

constexpr char kDigits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";
constexpr size_t kTimeDigits = 11;
constexpr size_t kPidDigits = 5;
constexpr size_t kCounterDigits = 2;
static_assert(kTimeDigits + kPidDigits + kCounterDigits == kQueueIdLength);

void append_base32(std::string& out, uint64_t value, size_t digits) {
    for (size_t i = digits; i-- > 0;) out.push_back(kDigits[(value >> (5 * i)) & 31]);
}

int digit_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'V') return c - 'A' + 10;
    return -1;
}

Status write_all(int fd, std::string_view data) {
    if (int error = system::write_all(fd, data); error != 0) return make_error(system::errno_text(error));
    return {};
}

Status read_exact_at(int fd, char* buffer, size_t size, uint64_t offset) {
    while (size > 0) {
        ssize_t n = ::pread(fd, buffer, size, static_cast<off_t>(offset));
        if (n < 0) {
            if (errno == EINTR) continue;
            return make_error(system::errno_text(errno));
        }
        if (n == 0) return make_error("unexpected end of file");
        buffer += n;
        size -= static_cast<size_t>(n);
        offset += static_cast<uint64_t>(n);
    }
    return {};
}

void put_u32(std::string& out, uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((value >> shift) & 0xff));
}

uint32_t get_u32(const unsigned char* p) {
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string record(char type, std::string_view data) {
    std::string out;
    out.reserve(5 + data.size());
    out.push_back(type);
    put_u32(out, static_cast<uint32_t>(data.size()));
    out.append(data);
    return out;
}

template <typename T>
std::optional<T> parse_number(std::string_view text) {
    T value{};
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
    return value;
}

std::string_view ret_name(Ret ret) {
    switch (ret) {
    case Ret::full: return "full";
    case Ret::headers: return "hdrs";
    case Ret::unspecified: break;
    }
    return "";
}

std::string_view body_name(BodyType body) {
    switch (body) {
    case BodyType::eight_bit_mime: return "8bitmime";
    case BodyType::binary_mime: return "binarymime";
    case BodyType::seven_bit: break;
    }
    return "7bit";
}

Result<ipc::Frame> decode_nested(std::string_view data, size_t max) {
    ipc::Frame frame;
    size_t consumed = 0;
    std::string error;
    auto status = ipc::decode(data, frame, consumed, error, max);
    if (status != ipc::DecodeStatus::complete || consumed != data.size())
        return make_error(error.empty() ? std::string("truncated attribute list") : error);
    return frame;
}

// One line of reason text: printable, no CR/LF, bounded.
std::string clean_reason(std::string_view reason) {
    std::string out;
    for (char c : reason.substr(0, 1000)) {
        unsigned char u = static_cast<unsigned char>(c);
        out.push_back(u < 0x20 || u == 0x7f ? ' ' : c);
    }
    return out;
}

}  // namespace

// ---------------------------------------------------------------------------
std::string new_queue_id() {
    static std::mutex mutex;
    static uint64_t last_time = 0;
    static uint32_t counter = 0;
    std::lock_guard lock(mutex);
    uint64_t now = 0;
    for (;;) {
        timeval tv{};
        gettimeofday(&tv, nullptr);
        now = static_cast<uint64_t>(tv.tv_sec) * 1000000u + static_cast<uint64_t>(tv.tv_usec);
        if (now > last_time) {
            counter = 0;
            break;
        }
        // Same (or an earlier, after a clock step) microsecond: count on, and
        // wait for the next microsecond when the counter is used up.
        if (counter + 1 < (1u << (5 * kCounterDigits))) {
            ++counter;
            now = last_time;
            break;
        }
        usleep(1);
    }
    last_time = now;
    std::string id;
    id.reserve(kQueueIdLength);
    append_base32(id, now, kTimeDigits);
    append_base32(id, static_cast<uint64_t>(getpid()), kPidDigits);
    append_base32(id, counter, kCounterDigits);
    return id;
}

bool valid_queue_id(std::string_view id) {
    return id.size() == kQueueIdLength && std::all_of(id.begin(), id.end(), [](char c) { return digit_value(c) >= 0; });
}

int64_t queue_id_time(std::string_view id) {
    if (!valid_queue_id(id)) return 0;
    uint64_t value = 0;
    for (size_t i = 0; i < kTimeDigits; ++i) value = (value << 5) | static_cast<uint64_t>(digit_value(id[i]));
    return static_cast<int64_t>(value / 1000000u);
}

// ---------------------------------------------------------------------------
std::string_view folder_name(Folder folder) {
    switch (folder) {
    case Folder::tmp: return "tmp";
    case Folder::incoming: return "incoming";
    case Folder::active: return "active";
    case Folder::deferred: return "deferred";
    case Folder::hold: return "hold";
    case Folder::corrupt: return "corrupt";
    case Folder::maildrop: return "maildrop";
    case Folder::log: return "log";
    }
    return "?";
}

std::optional<Folder> folder_from_name(std::string_view name) {
    for (Folder folder : {Folder::tmp, Folder::incoming, Folder::active, Folder::deferred, Folder::hold,
                          Folder::corrupt, Folder::maildrop, Folder::log})
        if (folder_name(folder) == name) return folder;
    return std::nullopt;
}

std::string Spool::folder_path(Folder folder) const { return fmt::format("{}/{}", root_, folder_name(folder)); }

std::string Spool::file_path(Folder folder, std::string_view id) const {
    if (folder == Folder::deferred && !id.empty())
        return fmt::format("{}/deferred/{}/{}", root_, id.back(), id);
    return fmt::format("{}/{}/{}", root_, folder_name(folder), id);
}

Status Spool::create_folders() const {
    auto make = [](const std::string& path, mode_t mode) -> Status {
        if (mkdir(path.c_str(), mode) != 0 && errno != EEXIST)
            return make_error(fmt::format("cannot create {}: {}", path, system::errno_text(errno)));
        struct stat info {};
        if (lstat(path.c_str(), &info) != 0 || !S_ISDIR(info.st_mode))
            return make_error(fmt::format("{} is not a directory", path));
        // mkdir honours the umask; the modes here are part of the design.
        if ((info.st_mode & 07777) != mode && chmod(path.c_str(), mode) != 0)
            return make_error(fmt::format("cannot chmod {}: {}", path, system::errno_text(errno)));
        return {};
    };
    for (Folder folder : {Folder::tmp, Folder::incoming, Folder::active, Folder::deferred, Folder::hold,
                          Folder::corrupt, Folder::log}) {
        if (Status s = make(folder_path(folder), 0750); !s) return s;
    }
    // sendmail(1) runs as any local user: it may create files in maildrop/
    // but not list or remove other users' files (like /tmp).
    if (Status s = make(folder_path(Folder::maildrop), 01733); !s) return s;
    for (char c : std::string_view(kDigits)) {
        if (Status s = make(fmt::format("{}/deferred/{}", root_, c), 0750); !s) return s;
    }
    return {};
}

Result<std::vector<std::string>> Spool::list(Folder folder) const {
    std::vector<std::string> ids;
    auto scan = [&ids](const std::string& path) -> Status {
        DIR* dir = opendir(path.c_str());
        if (!dir) {
            if (errno == ENOENT) return {};
            return make_error(fmt::format("cannot read {}: {}", path, system::errno_text(errno)));
        }
        while (dirent* entry = readdir(dir)) {
            if (valid_queue_id(entry->d_name)) ids.emplace_back(entry->d_name);
        }
        closedir(dir);
        return {};
    };
    if (folder == Folder::deferred) {
        for (char c : std::string_view(kDigits)) {
            if (Status s = scan(fmt::format("{}/deferred/{}", root_, c)); !s) return make_error(s.error());
        }
    } else if (Status s = scan(folder_path(folder)); !s) {
        return make_error(s.error());
    }
    std::sort(ids.begin(), ids.end());
    return ids;
}

std::optional<Folder> Spool::locate(std::string_view id) const {
    if (!valid_queue_id(id)) return std::nullopt;
    for (Folder folder :
         {Folder::incoming, Folder::active, Folder::deferred, Folder::hold, Folder::maildrop, Folder::corrupt}) {
        struct stat info {};
        if (lstat(file_path(folder, id).c_str(), &info) == 0 && S_ISREG(info.st_mode)) return folder;
    }
    return std::nullopt;
}

Status Spool::move(std::string_view id, Folder from, Folder to) const {
    std::string source = file_path(from, id), target = file_path(to, id);
    if (rename(source.c_str(), target.c_str()) != 0)
        return make_error(fmt::format("cannot move {} to {}: {}", source, target, system::errno_text(errno)));
    if (Status s = system::fsync_directory(system::parent_directory(target)); !s) return s;
    return system::fsync_directory(system::parent_directory(source));
}

// ---------------------------------------------------------------------------
std::string encode_envelope(const Envelope& envelope) {
    ipc::Frame frame;
    frame.add("queue_id", envelope.queue_id);
    frame.add("sender", envelope.sender);
    for (const Recipient& recipient : envelope.recipients) {
        ipc::Frame nested;
        nested.add("address", recipient.address);
        if (!recipient.orcpt.empty()) nested.add("orcpt", recipient.orcpt);
        nested.add("notify", std::to_string(recipient.notify));
        frame.add("rcpt", ipc::encode(nested));
    }
    if (!envelope.envid.empty()) frame.add("envid", envelope.envid);
    if (envelope.ret != Ret::unspecified) frame.add("ret", std::string(ret_name(envelope.ret)));
    frame.add("body", std::string(body_name(envelope.body)));
    if (envelope.smtputf8) frame.add("smtputf8", "yes");
    frame.add("arrival", std::to_string(envelope.arrival_time));
    frame.add("client_address", envelope.client_address);
    frame.add("client_helo", envelope.client_helo);
    frame.add("protocol", envelope.protocol);
    frame.add("auth_user", envelope.auth_user);
    frame.add("submitter_uid", std::to_string(envelope.submitter_uid));
    frame.add("size", std::to_string(envelope.message_size));
    if (envelope.expansion_depth != 0) frame.add("expansion_depth", std::to_string(envelope.expansion_depth));
    return ipc::encode(frame);
}

Result<Envelope> decode_envelope(std::string_view data) {
    auto frame = decode_nested(data, kMaxEnvelopeRecord);
    if (!frame) return make_error("envelope: " + frame.error());
    Envelope envelope;
    bool have_sender = false, have_arrival = false, have_id = false;
    for (const auto& [name, value] : frame->attributes) {
        if (name == "queue_id") {
            if (!valid_queue_id(value)) return make_error("envelope: bad queue id");
            envelope.queue_id = value;
            have_id = true;
        } else if (name == "sender") {
            envelope.sender = value;
            have_sender = true;
        } else if (name == "rcpt") {
            auto nested = decode_nested(value, kMaxEnvelopeRecord);
            if (!nested) return make_error("envelope: recipient: " + nested.error());
            Recipient recipient;
            auto address = nested->get("address");
            auto notify = nested->get("notify");
            if (!address || address->empty()) return make_error("envelope: recipient without address");
            recipient.address = std::string(*address);
            if (auto orcpt = nested->get("orcpt")) recipient.orcpt = std::string(*orcpt);
            if (notify) {
                auto bits = parse_number<unsigned>(*notify);
                if (!bits || *bits > 15) return make_error("envelope: bad notify");
                recipient.notify = *bits;
            }
            envelope.recipients.push_back(std::move(recipient));
        } else if (name == "envid") {
            envelope.envid = value;
        } else if (name == "ret") {
            if (value == "full") envelope.ret = Ret::full;
            else if (value == "hdrs") envelope.ret = Ret::headers;
            else return make_error("envelope: bad ret");
        } else if (name == "body") {
            if (value == "7bit") envelope.body = BodyType::seven_bit;
            else if (value == "8bitmime") envelope.body = BodyType::eight_bit_mime;
            else if (value == "binarymime") envelope.body = BodyType::binary_mime;
            else return make_error("envelope: bad body type");
        } else if (name == "smtputf8") {
            envelope.smtputf8 = value == "yes";
        } else if (name == "arrival") {
            auto time = parse_number<int64_t>(value);
            if (!time) return make_error("envelope: bad arrival time");
            envelope.arrival_time = *time;
            have_arrival = true;
        } else if (name == "client_address") {
            envelope.client_address = value;
        } else if (name == "client_helo") {
            envelope.client_helo = value;
        } else if (name == "protocol") {
            envelope.protocol = value;
        } else if (name == "auth_user") {
            envelope.auth_user = value;
        } else if (name == "submitter_uid") {
            auto uid = parse_number<int64_t>(value);
            if (!uid) return make_error("envelope: bad submitter uid");
            envelope.submitter_uid = *uid;
        } else if (name == "size") {
            auto size = parse_number<uint64_t>(value);
            if (!size) return make_error("envelope: bad size");
            envelope.message_size = *size;
        } else if (name == "expansion_depth") {
            auto depth = parse_number<int>(value);
            if (!depth || *depth < 0 || *depth > 1000) return make_error("envelope: bad expansion depth");
            envelope.expansion_depth = *depth;
        } else {
            return make_error(fmt::format("envelope: unknown attribute {}", log::printable(name)));
        }
    }
    if (!have_id || !have_sender || !have_arrival) return make_error("envelope: missing queue id, sender or arrival");
    if (envelope.recipients.empty()) return make_error("envelope: no recipients");
    return envelope;
}

// ---------------------------------------------------------------------------
Result<Writer> Writer::create(const Spool& spool, Folder destination, std::string queue_id, mode_t mode) {
    if (!valid_queue_id(queue_id)) return make_error("bad queue id");
    Writer writer;
    writer.spool_ = spool;
    writer.destination_ = destination;
    writer.queue_id_ = std::move(queue_id);
    // maildrop files are written by sendmail straight into maildrop/ under a
    // temporary name (an unprivileged user cannot write tmp/).
    writer.tmp_path_ = destination == Folder::maildrop
                           ? fmt::format("{}/.{}.tmp", spool.folder_path(Folder::maildrop), writer.queue_id_)
                           : spool.file_path(Folder::tmp, writer.queue_id_);
    writer.fd_ = UniqueFd(::open(writer.tmp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
    if (!writer.fd_)
        return make_error(fmt::format("cannot create {}: {}", writer.tmp_path_, system::errno_text(errno)));
    // The umask must not widen or narrow what the design says.
    if (fchmod(writer.fd_.get(), mode) != 0) {
        int error = errno;
        unlink(writer.tmp_path_.c_str());
        return make_error(fmt::format("cannot chmod {}: {}", writer.tmp_path_, system::errno_text(error)));
    }
    if (Status s = write_all(writer.fd_.get(), record('V', "1")); !s) {
        unlink(writer.tmp_path_.c_str());
        return make_error(fmt::format("cannot write {}: {}", writer.tmp_path_, s.error()));
    }
    return writer;
}

Writer::Writer(Writer&& other) noexcept
    : spool_(std::move(other.spool_)),
      destination_(other.destination_),
      queue_id_(std::move(other.queue_id_)),
      tmp_path_(std::move(other.tmp_path_)),
      fd_(std::move(other.fd_)),
      chunk_(std::move(other.chunk_)),
      size_(other.size_),
      committed_(other.committed_) {
    other.tmp_path_.clear();
    other.committed_ = true;
}

Writer& Writer::operator=(Writer&& other) noexcept {
    if (this != &other) {
        abort();
        spool_ = std::move(other.spool_);
        destination_ = other.destination_;
        queue_id_ = std::move(other.queue_id_);
        tmp_path_ = std::move(other.tmp_path_);
        fd_ = std::move(other.fd_);
        chunk_ = std::move(other.chunk_);
        size_ = other.size_;
        committed_ = other.committed_;
        other.tmp_path_.clear();
        other.committed_ = true;
    }
    return *this;
}

Writer::~Writer() { abort(); }

void Writer::abort() {
    if (!committed_ && !tmp_path_.empty()) {
        fd_.reset();
        unlink(tmp_path_.c_str());
    }
    tmp_path_.clear();
    committed_ = true;
}

Status Writer::flush_chunk() {
    if (chunk_.empty()) return {};
    Status s = write_all(fd_.get(), record('M', chunk_));
    chunk_.clear();
    if (!s) return make_error(fmt::format("cannot write {}: {}", tmp_path_, s.error()));
    return {};
}

Status Writer::append(std::string_view data) {
    if (committed_) return make_error("queue file already committed or aborted");
    size_ += data.size();
    while (!data.empty()) {
        size_t room = kMaxChunk - chunk_.size();
        size_t take = std::min(room, data.size());
        chunk_.append(data.substr(0, take));
        data.remove_prefix(take);
        if (chunk_.size() == kMaxChunk) {
            if (Status s = flush_chunk(); !s) return s;
        }
    }
    return {};
}

Status Writer::commit(Envelope envelope) {
    if (committed_) return make_error("queue file already committed or aborted");
    if (Status s = flush_chunk(); !s) return s;
    envelope.queue_id = queue_id_;
    envelope.message_size = size_;
    std::string tail = record('E', encode_envelope(envelope));
    std::string size(8, '\0');
    for (int i = 0; i < 8; ++i) size[static_cast<size_t>(i)] = static_cast<char>((size_ >> (56 - 8 * i)) & 0xff);
    tail += record('Z', size);
    if (Status s = write_all(fd_.get(), tail); !s) return make_error(fmt::format("cannot write {}: {}", tmp_path_, s.error()));
    if (fsync(fd_.get()) != 0) return make_error(fmt::format("cannot fsync {}: {}", tmp_path_, system::errno_text(errno)));
    std::string target = spool_.file_path(destination_, queue_id_);
    if (rename(tmp_path_.c_str(), target.c_str()) != 0)
        return make_error(fmt::format("cannot rename {} to {}: {}", tmp_path_, target, system::errno_text(errno)));
    committed_ = true;
    tmp_path_.clear();
    // DESIGN §3: the message is ours only once the rename is durable.
    Status synced = system::fsync_directory(system::parent_directory(target));
    if (!synced && destination_ == Folder::maildrop) {
        // maildrop/ is 1733: sendmail's user may create files there but not
        // open the folder to fsync it. syncfs(2) on the file's own
        // descriptor makes the rename durable without that access.
        if (syncfs(fd_.get()) == 0) synced = {};
    }
    fd_.reset();
    return synced;
}

// ---------------------------------------------------------------------------
// Reading. The envelope is written after the message (its size is only
// known then), so the record order on disk is V, M*, E, Z.
Result<Reader> Reader::open(const std::string& path) {
    Reader reader;
    reader.fd_ = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!reader.fd_) return make_error(fmt::format("cannot open {}: {}", path, system::errno_text(errno)));
    struct stat info {};
    if (fstat(reader.fd_.get(), &info) != 0) return make_error(fmt::format("cannot stat {}: {}", path, system::errno_text(errno)));
    if (!S_ISREG(info.st_mode)) return make_error(fmt::format("{} is not a regular file", path));
    uint64_t file_size = static_cast<uint64_t>(info.st_size);
    uint64_t offset = 0;
    bool have_version = false, have_envelope = false, have_end = false;
    uint64_t message_bytes = 0;
    while (offset < file_size) {
        if (have_end) return make_error("data after the end record");
        if (file_size - offset < 5) return make_error("truncated record header");
        unsigned char header[5];
        if (Status s = read_exact_at(reader.fd_.get(), reinterpret_cast<char*>(header), 5, offset); !s)
            return make_error(s.error());
        char type = static_cast<char>(header[0]);
        uint32_t length = get_u32(header + 1);
        offset += 5;
        if (length > file_size - offset) return make_error("truncated record");
        switch (type) {
        case 'V': {
            if (have_version || length > 16) return make_error("bad version record");
            std::string version(length, '\0');
            if (Status s = read_exact_at(reader.fd_.get(), version.data(), length, offset); !s) return make_error(s.error());
            if (version != "1") return make_error("unknown queue file version " + log::printable(version));
            have_version = true;
            break;
        }
        case 'M':
            if (!have_version || have_envelope) return make_error("message record out of order");
            if (length > kMaxChunk) return make_error("message record too long");
            reader.chunks_.emplace_back(offset, length);
            message_bytes += length;
            break;
        case 'E': {
            if (!have_version || have_envelope || length > kMaxEnvelopeRecord) return make_error("bad envelope record");
            std::string data(length, '\0');
            if (Status s = read_exact_at(reader.fd_.get(), data.data(), length, offset); !s) return make_error(s.error());
            auto envelope = decode_envelope(data);
            if (!envelope) return make_error(envelope.error());
            reader.envelope_ = std::move(*envelope);
            have_envelope = true;
            break;
        }
        case 'Z': {
            if (!have_envelope || length != 8) return make_error("bad end record");
            unsigned char size[8];
            if (Status s = read_exact_at(reader.fd_.get(), reinterpret_cast<char*>(size), 8, offset); !s)
                return make_error(s.error());
            uint64_t total = 0;
            for (unsigned char b : size) total = (total << 8) | b;
            if (total != message_bytes || total != reader.envelope_.message_size)
                return make_error("message size does not match the end record");
            have_end = true;
            break;
        }
        default: return make_error(fmt::format("unknown record type 0x{:02x}", static_cast<unsigned>(header[0])));
        }
        offset += length;
    }
    if (!have_end) return make_error("no end record (incomplete file)");
    reader.message_size_ = message_bytes;
    return reader;
}

Status Reader::read_message(const std::function<bool(std::string_view)>& sink) const {
    std::string buffer;
    for (const auto& [offset, length] : chunks_) {
        buffer.resize(length);
        if (Status s = read_exact_at(fd_.get(), buffer.data(), length, offset); !s) return s;
        if (!sink(buffer)) break;
    }
    return {};
}

Result<std::string> Reader::message(uint64_t limit) const {
    if (message_size_ > limit) return make_error("message larger than the limit");
    std::string out;
    out.reserve(message_size_);
    if (Status s = read_message([&out](std::string_view chunk) {
            out.append(chunk);
            return true;
        });
        !s)
        return make_error(s.error());
    return out;
}

Result<std::string> Reader::message_prefix(size_t limit) const {
    std::string out;
    if (Status s = read_message([&out, limit](std::string_view chunk) {
            out.append(chunk.substr(0, limit - out.size()));
            return out.size() < limit;
        });
        !s)
        return make_error(s.error());
    return out;
}

Result<std::string> Reader::read_range(uint64_t offset, size_t max) const {
    std::string out;
    uint64_t start = 0;  // message offset of the current chunk
    for (const auto& [file_offset, length] : chunks_) {
        if (out.size() >= max) break;
        uint64_t end = start + length;
        if (offset < end) {
            uint64_t skip = offset > start ? offset - start : 0;
            size_t take = static_cast<size_t>(std::min<uint64_t>(length - skip, max - out.size()));
            size_t had = out.size();
            out.resize(had + take);
            if (Status s = read_exact_at(fd_.get(), out.data() + had, take, file_offset + skip); !s)
                return make_error(s.error());
            offset += take;
        }
        start = end;
    }
    return out;
}

// ---------------------------------------------------------------------------
std::string_view recipient_state_name(RecipientState state) {
    switch (state) {
    case RecipientState::pending: return "pending";
    case RecipientState::sent: return "sent";
    case RecipientState::deferred: return "deferred";
    case RecipientState::bounced: return "bounced";
    case RecipientState::expanded: return "expanded";
    }
    return "?";
}

bool StatusLog::all_done() const {
    return std::all_of(recipients.begin(), recipients.end(), [](const RecipientStatus& r) {
        return r.state == RecipientState::sent || r.state == RecipientState::bounced ||
               r.state == RecipientState::expanded;
    });
}

std::string format_recipient_line(size_t index, const RecipientStatus& status) {
    auto word = [](std::string_view text) {
        std::string out = text.empty() ? "-" : clean_reason(text);
        std::replace(out.begin(), out.end(), ' ', '_');
        return out;
    };
    if (status.relay.empty() && !status.remote_dsn)
        return fmt::format("r {} {} {} {} {}\n", index, recipient_state_name(status.state), status.time,
                           word(status.dsn), clean_reason(status.reason));
    return fmt::format("x {} {} {} {} {} {} {}\n", index, recipient_state_name(status.state), status.time,
                       word(status.dsn), word(status.relay), status.remote_dsn ? "y" : "n", clean_reason(status.reason));
}

StatusLog parse_status_log(std::string_view text, size_t recipient_count) {
    StatusLog log;
    log.recipients.resize(recipient_count);
    while (!text.empty()) {
        size_t end = text.find('\n');
        if (end == std::string_view::npos) break;  // torn last line
        std::string_view line = text.substr(0, end);
        text.remove_prefix(end + 1);
        auto next_word = [&line]() {
            size_t space = line.find(' ');
            std::string_view word = line.substr(0, space);
            line.remove_prefix(space == std::string_view::npos ? line.size() : space + 1);
            return word;
        };
        std::string_view kind = next_word();
        if (kind == "b") {
            log.bounce_queued = true;
        } else if (kind == "w") {
            log.delay_warned = true;
        } else if (kind == "n") {
            if (auto time = parse_number<int64_t>(next_word())) log.next_attempt = *time;
        } else if (kind == "r" || kind == "x") {
            auto index = parse_number<size_t>(next_word());
            std::string_view state = next_word();
            auto time = parse_number<int64_t>(next_word());
            std::string_view dsn = next_word();
            std::string_view relay, remote_dsn = "n";
            if (kind == "x") {
                relay = next_word();
                remote_dsn = next_word();
                if (relay.empty() || (remote_dsn != "y" && remote_dsn != "n")) continue;
            }
            if (!index || *index >= recipient_count || !time) continue;
            RecipientStatus& status = log.recipients[*index];
            RecipientState parsed;
            if (state == "sent") parsed = RecipientState::sent;
            else if (state == "deferred") parsed = RecipientState::deferred;
            else if (state == "bounced") parsed = RecipientState::bounced;
            else if (state == "expanded") parsed = RecipientState::expanded;
            else continue;
            // A final outcome is never undone by a later line.
            bool final = status.state == RecipientState::sent || status.state == RecipientState::bounced ||
                         status.state == RecipientState::expanded;
            status.attempts += 1;
            if (final) continue;
            status.state = parsed;
            status.time = *time;
            status.dsn = dsn == "-" ? "" : std::string(dsn);
            status.reason = std::string(line);
            status.relay = relay == "-" ? "" : std::string(relay);
            status.remote_dsn = remote_dsn == "y";
        }
    }
    return log;
}

Result<StatusLog> read_status_log(const Spool& spool, std::string_view id, size_t recipient_count) {
    std::string path = spool.log_path(id);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
        if (errno == ENOENT) return parse_status_log("", recipient_count);
        return make_error(fmt::format("cannot open {}: {}", path, system::errno_text(errno)));
    }
    auto text = system::read_all(fd.get(), 64u << 20, path);
    if (!text) return make_error(text.error());
    return parse_status_log(*text, recipient_count);
}

Status append_status_log(const Spool& spool, std::string_view id, std::string_view lines) {
    std::string path = spool.log_path(id);
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640));
    if (!fd) return make_error(fmt::format("cannot open {}: {}", path, system::errno_text(errno)));
    // A line torn by a crash must not swallow the first line written now.
    struct stat info {};
    char last = '\n';
    if (fstat(fd.get(), &info) == 0 && info.st_size > 0) {
        UniqueFd reader(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        if (reader && pread(reader.get(), &last, 1, info.st_size - 1) != 1) last = '\n';
    }
    if (last != '\n') {
        if (Status s = write_all(fd.get(), "\n"); !s) return make_error(fmt::format("cannot write {}: {}", path, s.error()));
    }
    if (Status s = write_all(fd.get(), lines); !s) return make_error(fmt::format("cannot write {}: {}", path, s.error()));
    if (fsync(fd.get()) != 0) return make_error(fmt::format("cannot fsync {}: {}", path, system::errno_text(errno)));
    return {};
}

}  // namespace facteur::queue
