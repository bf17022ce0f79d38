"""A compiled hint to the CPU: start loading a state row before the loop needs it."""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

_I8_POINTER = ir.IntType(8).as_pointer()
_PREFETCH_TYPE = ir.FunctionType(ir.VoidType(), [_I8_POINTER] + [ir.IntType(32)] * 3)


@intrinsic
def prefetch_row(typingctx, array, row):
    """Prefetch, for writing, the cache lines holding ``array[row, :]`` (a 2-d C array; a row of
    three or more float64s can straddle two lines, so its first and last element are asked for).

    Model state is read at hashed, effectively random coordinates: tens of megabytes touched one
    cache line at a time, so each non-zero waits on a memory miss. Issuing the next row's misses
    while the current row computes overlaps them (LLVM's ``llvm.prefetch``; no bounds check, a
    prefetch of any address is harmless).
    """
    if not (isinstance(array, types.Array) and array.ndim == 2 and isinstance(row, types.Integer)):
        return None
    signature = types.void(array, row)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        data = context.make_array(array_type)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        row_index = context.cast(builder, args[1], signature.args[1], types.intp)
        columns = cgutils.unpack_tuple(builder, data.shape, 2)[1]
        last = builder.sub(columns, context.get_constant(types.intp, 1))
        function = cgutils.get_or_insert_function(
            builder.module, _PREFETCH_TYPE, "llvm.prefetch.p0"
        )
        write, keep_in_all_caches, data_cache = (ir.Constant(ir.IntType(32), v) for v in (1, 3, 1))
        for column in (zero, last):
            pointer = cgutils.get_item_pointer(
                context, builder, array_type, data, [row_index, column], wraparound=False
            )
            builder.call(
                function,
                [builder.bitcast(pointer, _I8_POINTER), write, keep_in_all_caches, data_cache],
            )
        return context.get_dummy_value()

    return signature, codegen
