import random
random.seed(20261125)
atoms = ['a','b','key','x.y','=',':',' ','\t','\f','\\','\\\\','\n','\r\n','\r','#','!','\\u0041','\\u00e9','\\uZZ','\\t','\\n','\\ ','\\=','\\:','é','server.1','127.0.0.1:2888:3888;2181','  ','\n\n','\\\n','\\\r\n','\\\r','\\uD83D\\uDE00','\\uD800','\\u+123','\\u12']
cases = []
for i in range(800):
    n = random.randint(1, 14)
    s = ''.join(random.choice(atoms) for _ in range(n))
    cases.append(s)
with open('cases.txt','w', encoding='utf-8') as f:
    for c in cases:
        f.write(c.encode('utf-8').hex() + '\n')
