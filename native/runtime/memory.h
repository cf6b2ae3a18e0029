// Guest memory mappings: anonymous shared memory from a memfd (guest RAM) or a mapped file
// (memory images, QEMU's memory-backend-file). Owned through shared_ptr so that every user (the
// JS view, a running VM, a sim thread) keeps the pages mapped for as long as it needs them: the
// JS side's close() detaches its views and drops its reference; munmap happens with the last one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace runtime {

struct SysError {
  int err = 0;              // errno
  const char* syscall = "";  // which call failed
  const char* message = nullptr;  // what was wrong, where no call failed (else strerror(err))
};

class Mapping {
 public:
  // memfd_create + ftruncate + mmap(MAP_SHARED); size rounded up to a whole page.
  static std::shared_ptr<Mapping> allocate(size_t bytes, SysError* error);
  // mmap of a whole file. writable: MAP_SHARED read-write; otherwise MAP_PRIVATE read-write
  // (copy-on-write: a stray write never faults and never reaches the file). Refuses anything but
  // a regular file, and a file larger than max_bytes (EFBIG).
  static std::shared_ptr<Mapping> map_file(const std::string& path, bool writable, size_t max_bytes,
                                           SysError* error);

  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  // The memfd or file descriptor (-1 if none). Valid while the Mapping lives.
  int fd() const { return fd_; }
  bool shared_with_file() const { return file_backed_ && writable_; }

  static size_t page_size();

  // The live mapping that holds all of [p, p + len), or null if none does. A worker that was
  // handed a raw view of guest memory takes this reference while the JS thread is its own, so a
  // close() of the memory (or a guest's) while the work runs cannot unmap the pages under it.
  static std::shared_ptr<Mapping> containing(const void* p, size_t len);

 private:
  Mapping() = default;
  // Entered into the registry containing() reads once mapped; ~Mapping takes it out before munmap.
  static void enroll(const std::shared_ptr<Mapping>& m);
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  int fd_ = -1;
  bool file_backed_ = false;
  bool writable_ = true;
};

}  // namespace runtime
