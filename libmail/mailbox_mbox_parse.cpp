// mbox parsing (see mailbox_mbox_parse.hpp): pure byte-level work over an
// mbox's content, fed in chunks of any size.
#include "libmail/mailbox_mbox_parse.hpp"

#include <limits>

#include <fmt/format.h>

#include "libmail/ascii.hpp"

namespace facteur::store::detail {
namespace {

constexpr std::string_view kFrom = "From ";
// Longest field-name prefix looked at: "Content-Length" with some
// whitespace before the ':' (RFC 5322 §4.5.3 obs-fields).
constexpr size_t kMaxFieldPrefix = 24;

}  // namespace

bool mbox_internal_field(std::string_view name, bool& is_status) {
    static constexpr std::string_view kFields[] = {"status", "x-status", "x-keywords", "x-uid",
                                                   "x-imap", "x-imapbase", "content-length"};
    is_status = false;
    for (std::string_view field : kFields) {
        if (ascii::iequals(name, field)) {
            is_status = field == "status";
            return true;
        }
    }
    return false;
}

void MboxFilter::feed(std::string_view input, std::string& out) {
    size_t i = 0;
    while (i < input.size()) {
        char c = input[i];
        switch (state_) {
            case State::line_start:
                line_start_ = consumed_ + i;
                if (in_header_) {
                    if (c == '\n') {  // RFC 5322 §2.1: the empty line ends the header
                        end_of_headers();
                        emit(out, "\n");
                        ++i;
                        break;
                    }
                    if (c == '\r') {
                        pending_.assign(1, '\r');
                        state_ = State::carriage;
                        ++i;
                        break;
                    }
                    if (c == ' ' || c == '\t') {  // RFC 5322 §2.2.3: a folded continuation
                        state_ = dropping_field_ ? State::drop : State::pass;
                        break;
                    }
                    dropping_field_ = status_field_ = false;
                    if (c == '>') {
                        state_ = State::quote;
                        ++i;
                        break;
                    }
                    state_ = State::field_name;
                    break;
                }
                if (c == '>') {
                    state_ = State::quote;  // the first '>' is held back
                    ++i;
                    break;
                }
                state_ = State::pass;
                break;
            case State::carriage:
                if (c == '\n') {
                    end_of_headers();
                    emit(out, "\r\n");
                    pending_.clear();
                    state_ = State::line_start;
                    ++i;
                    break;
                }
                dropping_field_ = status_field_ = false;
                emit(out, pending_);
                pending_.clear();
                state_ = State::pass;
                break;
            case State::field_name: {
                if (c == ':') {
                    std::string_view name(pending_);
                    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
                    bool is_status = false;
                    if (mbox_internal_field(name, is_status)) {
                        dropping_field_ = true;
                        status_field_ = is_status;
                        state_ = State::drop;
                    } else {
                        pending_ += ':';
                        emit(out, pending_);
                        state_ = State::pass;
                    }
                    pending_.clear();
                    ++i;
                    break;
                }
                if (c == '\n' || pending_.size() >= kMaxFieldPrefix) {
                    emit(out, pending_);
                    pending_.clear();
                    state_ = State::pass;
                    break;
                }
                pending_ += c;
                ++i;
                break;
            }
            case State::quote:
                // Every '>' after the first goes out at once; whether the
                // held one goes too depends on what follows. All '>' being
                // alike, the output is the same as dropping the first.
                if (c == '>') {
                    emit(out, ">");
                    ++i;
                    break;
                }
                state_ = State::from_prefix;
                break;
            case State::from_prefix:
                if (c == kFrom[pending_.size()]) {
                    pending_ += c;
                    ++i;
                    if (pending_.size() == kFrom.size()) {  // a quoted From_ line: one '>' less
                        emit(out, pending_);
                        pending_.clear();
                        state_ = State::pass;
                    }
                    break;
                }
                emit(out, ">");
                emit(out, pending_);
                pending_.clear();
                state_ = State::pass;
                break;
            case State::pass:
            case State::drop: {
                size_t newline = input.find('\n', i);
                size_t end = newline == std::string_view::npos ? input.size() : newline + 1;
                std::string_view part = input.substr(i, end - i);
                if (state_ == State::pass) {
                    emit(out, part);
                } else if (status_field_ && part.find('R') != std::string_view::npos) {
                    seen_ = true;
                }
                i = end;
                if (newline != std::string_view::npos) state_ = State::line_start;
                break;
            }
        }
    }
    consumed_ += input.size();
}

void MboxFilter::finish(std::string& out) {
    switch (state_) {
        case State::carriage:
        case State::field_name: emit(out, pending_); break;
        case State::quote: emit(out, ">"); break;
        case State::from_prefix:
            emit(out, ">");
            emit(out, pending_);
            break;
        default: break;
    }
    pending_.clear();
    state_ = State::line_start;
    if (!header_end_known_) header_end_ = consumed_;
}

void MboxScanner::feed(std::string_view chunk) {
    size_t i = 0;
    while (i < chunk.size()) {
        if (collecting_) {
            if (prefix_.empty()) prefix_offset_ = offset_ + i;
            char c = chunk[i++];
            prefix_ += c;
            if (c == '\n' || prefix_.size() == kFrom.size()) {
                collecting_ = c == '\n';
                line_start(prefix_, prefix_offset_);
                prefix_.clear();
            }
            continue;
        }
        size_t newline = chunk.find('\n', i);
        size_t end = newline == std::string_view::npos ? chunk.size() : newline + 1;
        line_data(chunk.substr(i, end - i), offset_ + i);
        i = end;
        if (newline != std::string_view::npos) collecting_ = true;
    }
    offset_ += chunk.size();
}

void MboxScanner::line_start(std::string_view prefix, uint64_t offset) {
    bool empty = prefix == "\n" || prefix == "\r\n";
    // Before the first message any From_ line starts one (what precedes it
    // is garbage a broken program left); later only after an empty line.
    if (prefix == kFrom && (!in_message_ || previous_empty_)) {
        if (in_message_) {
            Status ended = end_message(held_.empty() ? offset : held_offset_);
            if (!ended && error_.ok()) error_ = ended;  // the first error is reported by finish()
        }
        held_.clear();
        current_ = MboxMessage{};
        current_.from_offset = offset;
        current_.content_start = offset + prefix.size();
        in_message_ = in_from_line_ = true;
        filter_ = MboxFilter{};
        counter_ = ServedSizeCounter{};
        fnv_ = Fnv{};
        header_hashed_ = 0;
        md5_.update(prefix);
        fnv_.update(prefix);
        previous_empty_ = false;
        return;
    }
    previous_empty_ = empty;
    if (!in_message_) return;
    if (!held_.empty()) {
        to_filter(held_);
        held_.clear();
    }
    if (empty) {
        held_ = std::string(prefix);
        held_offset_ = offset;
        return;
    }
    to_filter(prefix);
}

void MboxScanner::line_data(std::string_view bytes, uint64_t offset) {
    if (in_from_line_) {
        md5_.update(bytes);
        fnv_.update(bytes);
        if (bytes.back() == '\n') {
            in_from_line_ = false;
            current_.content_start = offset + bytes.size();
        }
        return;
    }
    if (in_message_) to_filter(bytes);
}

void MboxScanner::to_filter(std::string_view bytes) {
    out_.clear();
    filter_.feed(bytes, out_);
    take_output();
}

void MboxScanner::take_output() {
    counter_.feed(out_);
    // The header block's output comes first: hash what of it is new.
    uint64_t header_total = filter_.header_output();
    if (header_total > header_hashed_) {
        md5_.update(std::string_view(out_).substr(0, header_total - header_hashed_));
        header_hashed_ = header_total;
    }
}

Status MboxScanner::end_message(uint64_t end) {
    in_message_ = false;
    if (in_from_line_) {
        in_from_line_ = false;
        current_.content_start = end;
    }
    out_.clear();
    filter_.finish(out_);
    take_output();
    current_.content_end = end;
    current_.header_end = current_.content_start + filter_.header_end();
    current_.size = counter_.size();
    current_.seen = filter_.seen();
    current_.from_hash = fnv_.value;
    // Exact duplicates get their "-2", "-3" once all are known
    // (number_duplicates).
    std::string uid = md5_.hex();
    if (uids_.size() + uid.size() > std::numeric_limits<uint32_t>::max() / 2) return make_error("too many messages");
    current_.uid_offset = static_cast<uint32_t>(uids_.size());
    current_.uid_length = static_cast<uint8_t>(uid.size());
    uids_ += uid;
    messages_.push_back(current_);
    return {};
}

Status MboxScanner::finish() {
    if (collecting_ && !prefix_.empty()) {
        line_start(prefix_, prefix_offset_);
        prefix_.clear();
    }
    // At the end of the file an empty line is the last message's separator.
    if (in_message_)
        if (Status ended = end_message(held_.empty() ? offset_ : held_offset_); !ended) return ended;
    return error_;
}

std::string with_status_seen(std::string_view block) {
    size_t position = 0;
    while (position < block.size()) {
        size_t newline = block.find('\n', position);
        size_t line_end = newline == std::string_view::npos ? block.size() : newline + 1;
        std::string_view line = block.substr(position, line_end - position);
        size_t colon = line.find(':');
        bool status = false;
        if (colon != std::string_view::npos && line[0] != ' ' && line[0] != '\t') {
            std::string_view name = line.substr(0, colon);
            while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
            mbox_internal_field(name, status);
        }
        if (!status) {
            position = line_end;
            continue;
        }
        size_t field_end = line_end;
        while (field_end < block.size() && (block[field_end] == ' ' || block[field_end] == '\t')) {
            size_t next = block.find('\n', field_end);
            field_end = next == std::string_view::npos ? block.size() : next + 1;
        }
        std::string_view field = block.substr(position, field_end - position);
        std::string letters;
        for (char c : field.substr(colon + 1))
            if (c != ' ' && c != '\t' && c != '\r' && c != '\n') letters += c;
        std::string value;
        if (letters.find('R') == std::string::npos) value += 'R';
        value += letters;
        if (letters.find('O') == std::string::npos) value += 'O';
        std::string_view line_ending = field.size() >= 2 && field.substr(field.size() - 2) == "\r\n" ? "\r\n" : "\n";
        return fmt::format("{}Status: {}{}{}", block.substr(0, position), value, line_ending, block.substr(field_end));
    }
    std::string out(block);
    std::string_view line_ending = out.size() >= 2 && out.substr(out.size() - 2) == "\r\n" ? "\r\n" : "\n";
    if (!out.empty() && out.back() != '\n') out += '\n';
    out += "Status: RO";
    out += line_ending;
    return out;
}

}  // namespace facteur::store::detail
