// Builds the delivered message from the queue file: trace fields, header
// clean-up, loop detection, line-ending conversion.
#include "deliverd/delivered_message.hpp"

#include <fmt/format.h>

#include "libmail/message_header.hpp"

namespace facteur::deliverd {
namespace {

std::string_view trim(std::string_view text) {
    size_t begin = text.find_first_not_of(" \t\r\n");
    if (begin == std::string_view::npos) return {};
    size_t end = text.find_last_not_of(" \t\r\n");
    return text.substr(begin, end - begin + 1);
}

}  // namespace

std::string CrlfToLf::convert(std::string_view chunk) {
    std::string out;
    out.reserve(chunk.size() + 1);
    size_t i = 0;
    if (pending_cr_ && !chunk.empty()) {
        pending_cr_ = false;
        if (chunk[0] != '\n') out += '\r';  // a lone CR stays
    }
    while (i < chunk.size()) {
        size_t cr = chunk.find('\r', i);
        if (cr == std::string_view::npos) {
            out.append(chunk.substr(i));
            break;
        }
        out.append(chunk.substr(i, cr - i));
        if (cr + 1 == chunk.size()) {
            pending_cr_ = true;  // decided by the next chunk
            break;
        }
        if (chunk[cr + 1] != '\n') out += '\r';
        i = cr + 1;
    }
    return out;
}

std::string CrlfToLf::finish() {
    bool cr = pending_cr_;
    pending_cr_ = false;
    return cr ? std::string("\r") : std::string();
}

std::string trace_fields(std::string_view sender, std::string_view recipient) {
    return fmt::format("Return-Path: <{}>\nDelivered-To: {}\n", sender, recipient);
}

bool already_delivered_to(std::string_view header, std::string_view recipient) {
    std::string_view wanted = trim(recipient);
    for (const message::HeaderField& field : message::parse_header(header)) {
        if (!message::same_name(field.name, "Delivered-To")) continue;
        std::string value = message::unfold(field.value);
        std::string_view address = trim(value);
        if (address.size() >= 2 && address.front() == '<' && address.back() == '>')
            address = trim(address.substr(1, address.size() - 2));
        if (message::same_name(address, wanted)) return true;
    }
    return false;
}

std::string strip_server_fields(std::string_view header, Destination destination) {
    if (destination == Destination::mbox)
        return message::remove_fields(header, {"Return-Path", "Status", "X-Status", "X-UID", "X-Keywords", "X-IMAP",
                                               "X-IMAPbase", "Content-Length"});
    return message::remove_fields(header, {"Return-Path"});
}

Result<PreparedMessage> prepare_message(const queue::Reader& reader, std::string_view sender,
                                        std::string_view recipient, Destination destination) {
    auto prefix = reader.message_prefix(kMaxHeaderBytes);
    if (!prefix) return make_error(prefix.error());
    PreparedMessage prepared;
    size_t length = message::header_length(*prefix);
    // The header did not end within the prefix, and the message goes on:
    // its header section is larger than we accept.
    if (length == prefix->size() && reader.message_size() > prefix->size()) {
        prepared.problem = PreparedMessage::Problem::header_too_large;
        return prepared;
    }
    std::string_view header = std::string_view(*prefix).substr(0, length);
    if (already_delivered_to(header, recipient)) {
        prepared.problem = PreparedMessage::Problem::mail_loop;
        return prepared;
    }
    CrlfToLf converter;
    prepared.head = trace_fields(sender, recipient);
    prepared.head += converter.convert(strip_server_fields(header, destination));
    prepared.head += converter.finish();
    prepared.body_offset = length;
    return prepared;
}

store::MessageSource message_source(const queue::Reader& reader, PreparedMessage prepared) {
    return [&reader, prepared = std::move(prepared)](const store::ChunkSink& sink) -> Status {
        if (!sink(prepared.head)) return {};
        uint64_t skip = prepared.body_offset;
        bool stopped = false;
        CrlfToLf converter;
        Status read = reader.read_message([&](std::string_view chunk) {
            if (skip >= chunk.size()) {
                skip -= chunk.size();
                return true;
            }
            chunk.remove_prefix(static_cast<size_t>(skip));
            skip = 0;
            if (!sink(converter.convert(chunk))) {
                stopped = true;
                return false;
            }
            return true;
        });
        if (!read) return read;
        if (!stopped) {
            std::string tail = converter.finish();
            if (!tail.empty()) sink(tail);
        }
        return {};
    };
}

}  // namespace facteur::deliverd
