#!/usr/bin/env python3
# xform.py IN.cu OUT.cpp — rewrite a .cu file for the CPU emulator (emu.h):
# `kernel<<<grid, block, smem, stream>>>(args)` becomes
# `emu_launch(&kernel, grid, block, smem, stream, [=]() { kernel(args); })`,
# and `extern __shared__ T name[];` a pointer to the launch's dynamic shared
# memory.  Everything else compiles as C++ with emu.h's macros.
import re, sys
src = open(sys.argv[1]).read()
# extern __shared__ T name[];  ->  T *name = (T *)emu_dyn_smem();
src = re.sub(r'extern\s+__shared__\s+([\w ]+?)\s+(\w+)\[\];', r'\1 *\2 = (\1 *)emu_dyn_smem();', src)
out = []
i = 0
while True:
    j = src.find('<<<', i)
    if j < 0:
        out.append(src[i:]); break
    # kernel name: scan back over template args and identifier
    k = j
    if src[k-1] == '>':
        depth = 0; k -= 1
        while True:
            if src[k] == '>': depth += 1
            elif src[k] == '<':
                depth -= 1
                if depth == 0: break
            k -= 1
    while k > 0 and (src[k-1].isalnum() or src[k-1] == '_'): k -= 1
    name = src[k:j]
    e = src.find('>>>', j)
    cfg = src[j+3:e]
    # split cfg on top-level commas
    parts, depth, cur = [], 0, ''
    for ch in cfg:
        if ch in '([': depth += 1
        if ch in ')]': depth -= 1
        if ch == ',' and depth == 0: parts.append(cur); cur = ''
        else: cur += ch
    parts.append(cur)
    while len(parts) < 4: parts.append('0')
    # call args
    a = e + 3
    assert src[a] == '(', src[a:a+20]
    depth = 0; b = a
    while True:
        if src[b] == '(': depth += 1
        elif src[b] == ')':
            depth -= 1
            if depth == 0: break
        b += 1
    args = src[a+1:b]
    out.append(src[i:k])
    out.append('emu_launch((const void *)&%s, dim3(%s), dim3(%s), (size_t)(%s), (void *)(%s), [=]() { %s(%s); })' % (name, parts[0], parts[1], parts[2], parts[3], name, args))
    i = b + 1
open(sys.argv[2], 'w').write(''.join(out))
