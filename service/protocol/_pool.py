"""The descriptor pool of the generated protocol modules.

Not protobuf's default pool: tritonclient (the Triton backend's client) registers its own copy of
the same ``.proto`` files there, and a second registration of a file name is an error.
"""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
