var e,t,n,r,i,a,o,s,c,l,u=Symbol.for(`pv`),d={},f=[],p=/^m(i|n|o|s|text|space)$/,m=Array.isArray,h=f.slice,g=Object.assign;function _(e){e&&e.parentNode&&e.remove()}function v(e,t,n){var r,i,a,o={},s=arguments.length;for(a in t)a==`key`?r=t[a]:a==`ref`&&typeof e!=`function`?i=t[a]:o[a]=t[a];return s>2&&(o.children=s>3?h.call(arguments,2):n),y(e,o,r,i,null)}function y(n,r,i,a,o){var s={type:n,props:r,key:i,ref:a,__k:null,__:null,__b:0,__e:null,__c:null,constructor:u,__v:o||++t,__i:-1,__u:0};return!o&&e.vnode&&e.vnode(s),s}function b(e){return e.children}function x(e,t){this.props=e,this.context=t,this.__g=0}function S(e,t){if(t==null)return e.__&&S(e.__,e.__i+1);for(var n;t<e.__k.length;t++)if((n=e.__k[t])&&n.__e)return n.__e;return typeof e.type!=`function`||e.props.__P?null:S(e)}function C(t){var n,r=t.__v,i=r.__e,a=[],o=[],s=t.__P;s&&((n=g({constructor:u},r)).__v=r.__v+1,e.vnode&&e.vnode(n),P(s,n,r,t.__n,s.namespaceURI,32&r.__u?[i]:null,a,i||S(r),32&r.__u,o),n.__v=r.__v,n.__.__k[n.__i]=n,I(a,n,o),r.__=r.__e=null,n.__e!=i&&w(n))}function w(e){if((e=e.__)&&e.__c&&!e.props.__P)return e.__e=null,e.__k.some(function(t){return t&&(e.__e=t.__e)}),w(e)}function T(t){(8&t.__g||(t.__g|=8,n.push(t),i++))&&r==e.debounceRendering||((r=e.debounceRendering)||queueMicrotask)(E)}function E(){try{for(var e,t=1;n.length;)n.length>t&&n.sort(a),e=n.shift(),t=n.length,8&e.__g&&C(e)}finally{(i=n.length)&&(r||queueMicrotask)(E)}}function D(e,t,n,r,i,a,o,s,c,l,u){var p,m,h,g,_,v,y=r.__k||f,b=t.length;for(c=O(n,t,y,c,b),p=0;p<b;p++)(h=n.__k[p])!=null&&(m=~h.__i&&y[h.__i]||d,h.__i=p,v=P(e,h,m,i,a,o,s,c,l,u),g=h.__e,(m.ref!=h.ref||8&m.__u)&&(m.ref&&L(m.ref,null,h,m),h.ref&&u.push(h.ref,h.__c||g,h)),_||=g,4&h.__u?(c=k(h,c,e,!m.__v),m.__e&&(m.__e=null)):typeof h.type==`function`&&v!==void 0?c=v:g&&(c=g.nextSibling),h.__u&=-21);return n.__e=_,c}function O(e,t,n,r,i){var a,o,s,c,l,d,f,p,h,g=n.length,_=g,v=0,x=0,C=e.__k=Array(i);for(a=0;a<i;a++)(o=t[a])!=null&&typeof o!=`boolean`&&typeof o!=`function`?(typeof o!=`object`||o.constructor===String?o=C[a]=y(null,o):m(o)?o=C[a]=y(b,{children:o}):o.constructor===u&&o.__b?o=C[a]=y(o.type,o.props,o.key,o.ref,o.__v):C[a]=o,c=a+v,o.__=e,o.__b=e.__b+1,s=null,~(l=o.__i=A(o,n,c,_))&&(_--,(s=n[l])&&(s.__u|=2)),s&&s.__v?(o.__u|=16,l==c-1?v--:l==c+1?v++:l!=c&&(l>c?v--:v++,x=1)):(~l||(i>g?v--:i<g&&v++),typeof o.type!=`function`&&(o.__u|=4))):C[a]=null;if(x){for(d=[],f=[],a=0;a<i;a++)if((o=C[a])&&16&o.__u){for(v=0,p=d.length;v<p;)d[h=v+p>>1]<o.__i?v=h+1:p=h;d[v]=o.__i,f[a]=v+1}for(v=d.length;a--;)f[a]&&(f[a]==v?v--:C[a].__u|=4)}if(_)for(a=0;a<g;a++)!(s=n[a])||2&s.__u||(s.__e==r&&(r=S(s)),ne(s,s));return r}function k(e,t,n,r){var i,a,o,s;if(typeof e.type==`function`){if(e.props.__P)return t;if(i=e.__k)for(a=0;a<i.length;a++)i[a]&&(i[a].__=e,t=k(i[a],t,n,!1));return t}for(t&&!t.parentNode&&(t=S(e))&&!t.parentNode&&(t=null),o=e.__e,s=t;s&&s.nodeType==8;)s=s.nextSibling;for(o!=s&&(!r&&n.moveBefore&&o.parentNode?n.moveBefore(o,t):n.insertBefore(o,t||null)),t=o;(t&&=t.nextSibling)&&t.nodeType==8&&!t.data.startsWith(`$s`););return t}function A(e,t,n,r){var i,a=e.key,o=e.type,s=t[n],c=s&&!(2&s.__u);if(s===null&&a==null||c&&a==s.key&&o==s.type)return n;if(r>+!!c){for(i=n-1;i>=0;i--)if((s=t[i])&&!(2&s.__u)&&a==s.key&&o==s.type)return i;for(i=n+1;i<t.length;i++)if((s=t[i])&&!(2&s.__u)&&a==s.key&&o==s.type)return i}return-1}function j(e,t,n){n??=``,t[0]==`-`?e.setProperty(t,n):e[t]=n}function M(e,t,n,r,i){var a,o;if(t==`style`){if(typeof n==`string`)e.style.cssText=n;else{if(typeof r==`string`&&(e.style.cssText=r=``),r)for(t in r)n&&t in n||j(e.style,t);if(n)for(t in n)r&&n[t]==r[t]||j(e.style,t,n[t])}}else if(t[0]==`o`&&t[1]==`n`)typeof n!=`function`&&(n=null),typeof r!=`function`&&(r=null),(e.__e||={})[t]=n,n&&r||(o=l[t]||(l[t]=N(t)),(e.__a||={})[t]=c,a=t!=(t=t.replace(s,`$1`)),(t=t.slice(2))[0]<`a`&&(t=t.toLowerCase()),n?e.addEventListener(t,o,a):e.removeEventListener(t,o,a));else{if(i==`http://www.w3.org/2000/svg`)t=t.replace(/xlink(H|:h)/,`h`).replace(/sName$/,`s`);else if(t!=`width`&&t!=`height`&&t!=`href`&&t!=`list`&&t!=`form`&&t!=`tabIndex`&&t!=`download`&&t!=`rowSpan`&&t!=`colSpan`&&t!=`role`&&t!=`popover`&&t in e)try{e[t]=n??``;return}catch{}if(typeof n==`function`)return;n==null||!1===n&&t[4]!=`-`?e.removeAttribute(t):e.setAttribute(t,t==`popover`&&n==1?``:n)}}function N(t){return function(n){var r=this.__e;if(r){if(r=r[t],n[o]==null)n[o]=c++;else if(n[o]<this.__a[t])return;return r(e.event?e.event(n):n)}}}function P(t,n,r,i,a,o,s,c,l,d){var p,h,v,y,C,w,T,E,O,k,A,j,M,N,P,I,L,R,z=n.type;if(n.constructor!==u)return null;128&r.__u&&(l=32&r.__u,p=r.__c.__z)&&(n.__u|=l,h=o=[],p.nodeType==8?c=F(p,o):o.push(p),c=o[0]||c),(p=e.__b)&&p(n);e:if(typeof z==`function`){v=s.length;try{if(E=n.props,O=(p=z.prototype)&&p.render,k=(p=z.contextType)&&i[p.__c],A=p?k?k.props.value:p.__:i,(y=r.__c)?(n.__c=y,2&y.__g&&(y.__g|=1)):(O?n.__c=y=new z(E,A):(n.__c=y=new x(E,A),y.constructor=z,y.render=re),k&&k.sub(y),y.state||(y.state={}),y.__n=i,y.__g|=8,y.__h=[],y.__k=[]),O&&(y.__s||(y.__s=y.state),z.getDerivedStateFromProps&&(y.__s==y.state&&(y.__s=g({},y.__s)),g(y.__s,z.getDerivedStateFromProps(E,y.__s)))),C=y.props,w=y.state,y.__v=n,r.__c){if(E!==C&&O&&!z.getDerivedStateFromProps&&y.componentWillReceiveProps&&y.componentWillReceiveProps(E,A),n.__v==r.__v&&!(8&y.__g)||!(4&y.__g)&&y.shouldComponentUpdate&&!1===y.shouldComponentUpdate(E,y.__s,A)){n.__v!=r.__v&&(y.props=E,y.state=y.__s,y.__g&=-9),n.__e=r.__e,n.__k=r.__k,n.__k.some(function(e){e&&(e.__=n)}),f.push.apply(y.__h,y.__k),y.__k=[],y.__h.length&&s.push(y),c=S(r);break e}y.componentWillUpdate&&y.componentWillUpdate(E,y.__s,A),O&&y.componentDidUpdate&&y.__h.push(function(){y.componentDidUpdate(C,w,T)})}else O&&!z.getDerivedStateFromProps&&y.componentWillMount&&y.componentWillMount(),O&&y.componentDidMount&&y.__h.push(y.componentDidMount);y.context=A,y.props=E,y.__P=t,y.__g&=-5,j=e.__r,M=O?25:0;do y.__g&=-9,j&&j(n),p=y.render(y.props,y.state=y.__s,y.context);while(8&y.__g&&++M<25);O&&(f.push.apply(y.__h,y.__k),y.__k=[]),y.state=y.__s,y.getChildContext&&(i=g({},i,y.getChildContext())),O&&r.__c&&y.getSnapshotBeforeUpdate&&(T=y.getSnapshotBeforeUpdate(C,w)),N=p&&p.type===b&&p.key==null?p.props.children:p,E.__P&&(p=c,a=(t=E.__P).namespaceURI,l=o=null,r.props&&r.props.__P!=t&&(r.__k.some(function(e){e&&ne(e,e)}),r.__k=null),c=r.__k?S(r,0):null),c=D(t,m(N)?N:[N],n,r,i,a,o,s,c,l,d),E.__P&&(n.__e=null,c=p),n.__u&=-161,h&&h.some(_),y.__h.length&&s.push(y),1&y.__g&&(y.__g&=-4)}catch(t){if(s.length=v,n.__v=null,l||o){if(t&&t.then){if(n.__u|=128|l,o){for(~(L=o.indexOf(c||void 0))||(L=o.length);(R=o[L-1])&&R.nodeType==8;)L--;for(;L<o.length;L++)if(R=o[L]){if(o[L]=null,P){if(R==I)break}else{if(R.nodeType!=8)break;R.data.startsWith(`$s`)&&(I=F(P=R))}}}if(!P){for(;c&&c.nodeType==8&&c.nextSibling;)c=c.nextSibling;P=c}(p=F(P=n.__c.__z||(n.__c.__z=P)))?(n.__e=P,c=p):n.__e=c,c&&=c.nextSibling}else o&&o.some(_)}else n.__e=r.__e;n.__k||=r.__k||[],t&&t.then||ee(n),e.__e(t,n,r)}}else c=n.__e=te(r.__e,n,r,i,a,o,s,l,d,t);return(p=e.diffed)&&p(n),c}function F(e,t){if(e&&e.nodeType==8&&e.data.startsWith(`$s`))for(var n=1;e=e.nextSibling;){if(e.nodeType==8){if(e.data.startsWith(`$s`))n++;else if(e.data.startsWith(`/$s`)&&!--n)return e}t&&t.push(e)}}function ee(e){e&&(e.__c&&(e.__c.__g|=4),e.__k&&e.__k.some(ee))}function I(t,n,r){for(var i=0;i<r.length;)L(r[i++],r[i++],r[i++]);e.__c&&e.__c(n,t),t.some(function(n){try{t=n.__h,n.__h=[],t.some(function(e){e.call(n)})}catch(t){e.__e(t,n.__v)}})}function te(t,n,r,i,a,o,s,c,l,u){var f,g,v,y,b,x,C,w,T=r.props||d,E=n.props,O=n.type;if(O==`svg`?a=`http://www.w3.org/2000/svg`:O==`math`?a=`http://www.w3.org/1998/Math/MathML`:a||=`http://www.w3.org/1999/xhtml`,o){for(f=0;f<o.length;f++)if((b=o[f])&&(O?b.localName==O:b.nodeType==3)){t=b,o[f]=null;break}}if(!t){if(w=u.ownerDocument||document,!O)return w.createTextNode(E);t=w.createElementNS(a,O,E.is?E:u),c&&=(e.__m&&e.__m(n,o),!1),o=null}if(O){if(u=O==`template`&&t.content||t,o=O==`textarea`&&E.defaultValue!=null?null:o&&h.call(u.childNodes),!c&&o)for(T={},f=0;f<t.attributes.length;f++)T[(b=t.attributes[f]).name]=b.value;for(f in T)b=T[f],f==`dangerouslySetInnerHTML`?v=b:f==`children`||f in E||f==`value`&&`defaultValue`in E||f==`checked`&&`defaultChecked`in E||M(t,f,null,b,a);for(f in E)b=E[f],f==`children`?y=b:f==`dangerouslySetInnerHTML`?g=b:f==`value`?x=b:f==`checked`?C=b:c&&typeof b!=`function`||T[f]===b||M(t,f,b,T[f],a);g?(c||v&&(g.__html==v.__html||g.__html==t.innerHTML)||(t.innerHTML=g.__html),n.__k=[]):(v&&(t.textContent=``),(O==`foreignObject`||a==`http://www.w3.org/1998/Math/MathML`&&p.test(O))&&(a=`http://www.w3.org/1999/xhtml`),D(u,m(y)?y:[y],n,r,i,a,o,s,o?o[0]:r.__k&&S(r,0),c,l),o&&o.some(_)),c&&O!=`textarea`||(f=`value`,O==`progress`&&x==null?t.removeAttribute(f):x==null||x===t[f]&&(O!=`progress`||x)||M(t,f,x,T[f],a),f=`checked`,C!=null&&C!=t[f]&&M(t,f,C,T[f],a))}else T===E||c&&t.data==E||(t.data=E);return t}function L(t,n,r,i){try{typeof t==`function`?n?n.__x=t(n)||1:(i&&=i.__c||i.__e)&&(n=i.__x)&&(i.__x=null,typeof n==`function`?n():t(null)):t.current=n}catch(t){e.__e(t,r)}}function ne(t,n,r){var i,a,o,s;if(e.unmount&&e.unmount(t),!(i=t.ref)||i.current&&i.current!=t.__e||L(i,null,n,t),i=t.__c){if(i.componentWillUnmount)try{i.componentWillUnmount()}catch(t){e.__e(t,n)}i.__P=i.__n=null}if(i=t.__k)for(s=0;s<i.length;s++)i[s]&&ne(i[s],n,typeof t.type!=`function`||r&&!t.props.__P);!r&&(i=t.__c)&&(i=i.__z)&&(a=F(i,o=[]))&&(i==t.__e&&o.some(_),_(a),_(i)),r||_(t.__e),t.__e=t.__c=t.__=null}function re(e,t,n){return this.constructor(e,n)}function R(t,n){var r,i,a,o;e.__&&e.__(t,n),n.nodeType==9&&(n=n.documentElement),i=(r=t&&32&t.__u)?null:n.__k,n.__k=y(b,{children:[t]}),a=[],o=[],P(n,n.__k,i||d,d,n.namespaceURI,i?null:n.firstChild?h.call(n.childNodes):null,a,i?i.__e:n.firstChild,r,o),I(a,n.__k,o),n.__k.props.children=null}e={__e:function(e,t,n,r){for(var a,o,s;t=t.__;)if((a=t.__c)&&!(1&a.__g)){a.__g|=4;try{if((s=(o=a.constructor)&&o.getDerivedStateFromError)&&a.setState(o.getDerivedStateFromError(e)),a.componentDidCatch&&(a.componentDidCatch(e,r||{}),s=1),s&&8&a.__g)return void(a.__g|=2)}catch(t){e=t}}throw i=0,e}},t=0,x.prototype.setState=function(e,t){var n=this.__s;n&&n!=this.state||(n=this.__s=g({},this.state)),typeof e==`function`&&(e=e(g({},n),this.props)),e&&(g(n,e),this.__v&&(t&&this.__k.push(t),T(this)))},x.prototype.forceUpdate=function(e){this.__v&&(this.__g|=4,e&&this.__h.push(e),T(this))},x.prototype.render=b,n=[],i=0,a=function(e,t){return e.__v.__b-t.__v.__b},o=Symbol(),s=/(PointerCapture)$|Capture$/i,c=0,l={};var z=function(e,t,n,r){var i;t[0]=0;for(var a=1;a<t.length;a++){var o=t[a++],s=t[a]?(t[0]|=o?1:2,n[t[a++]]):t[++a];o===3?r[0]=s:o===4?r[1]=Object.assign(r[1]||{},s):o===5?(r[1]=r[1]||{})[t[++a]]=s:o===6?r[1][t[++a]]+=s+``:o?(i=e.apply(s,z(e,s,n,[``,null])),r.push(i),s[0]?t[0]|=2:(t[a-2]=0,t[a]=i)):r.push(s)}return r},ie=new Map;function ae(e){var t=ie.get(this);return t||(t=new Map,ie.set(this,t)),(t=z(this,t.get(e)||(t.set(e,t=function(e){for(var t,n,r=1,i=``,a=``,o=[0],s=function(e){r===1&&(e||(i=i.replace(/^\s*\n\s*|\s*\n\s*$/g,``)))?o.push(0,e,i):r===3&&(e||i)?(o.push(3,e,i),r=2):r===2&&i===`...`&&e?o.push(4,e,0):r===2&&i&&!e?o.push(5,0,!0,i):r>=5&&((i||!e&&r===5)&&(o.push(r,0,i,n),r=6),e&&(o.push(r,e,0,n),r=6)),i=``},c=0;c<e.length;c++){c&&(r===1&&s(),s(c));for(var l=0;l<e[c].length;l++)t=e[c][l],r===1?t===`<`?(s(),o=[o],r=3):i+=t:r===4?i===`--`&&t===`>`?(r=1,i=``):i=t+i[0]:a?t===a?a=``:i+=t:t===`"`||t===`'`?a=t:t===`>`?(s(),r=1):r&&(t===`=`?(r=5,n=i,i=``):t===`/`&&(r<5||e[c][l+1]===`>`)?(s(),r===3&&(o=o[0]),r=o,(o=o[0]).push(2,0,r),r=0):t===` `||t===`	`||t===`
`||t===`\r`?(s(),r=2):i+=t),r===3&&i===`!--`&&(r=4,o=o[0])}return s(),o}(e)),t),arguments,[])).length>1?t:t[0]}var B=ae.bind(v),V,H,oe,se,ce=Object.is,U=0,le=[],ue=[],W=e,de=W.__b,fe=W.__r,pe=W.diffed,me=W.__c,he=W.unmount,ge=W.__;function _e(e,t){W.__h&&W.__h(H,e,U||t),U=0;var n=H.__H||(H.__H={__:[],__h:[]});return e>=n.__.length&&n.__.push({}),n.__[e]}function G(e){return U=1,ve(De,e)}function ve(e,t,n){var r=_e(V++,2);if(r.t=e,!r.__c&&(r.__=[n?n(t):De(void 0,t),function(e){var t=(r.__N||r.__)[0],n=r.t(t,e);ce(t,n)||(r.__N=[n,r.__[1]],r.__c.setState({}))}],r.__c=H,!H.__f)){H.__f=!0;var i=H.shouldComponentUpdate;H.shouldComponentUpdate=function(e,t,n){var r=this.__H;if(!r)return!0;var a=!1,o=this.props!=e;if(r.__.some(function(e){e.__N&&(a=!0,ce(e.__[0],e.__N[0])||(o=!0))}),i){var s=i.call(this,e,t,n);return a?s||o:s}return!a||o}}return r.__}function K(e,t){var n=_e(V++,3);!W.__s&&Ee(n.__H,t)&&(n.__P=!0,n.__=e,n.u=t,H.__H.__h.push(n))}function ye(e){return U=5,be(function(){return{current:e}},[])}function be(e,t){var n=_e(V++,7);return Ee(n.__H,t)&&(n.__=e(),n.__H=t),n.__}function xe(){var e;do{for(;e=ue.shift();)try{q(e)}catch(t){W.__e(t,{__:(e=e.__P)&&e.__v})}for(;e=le.shift();){var t=e.__H;if(e.__P&&t)try{t.__h.some(q),t.__h.some(Te),t.__h=[]}catch(n){t.__h=[],W.__e(n,e.__v)}}}while(ue.length)}W.__b=function(e){H=null,de&&de(e)},W.__=function(e,t){e&&t.__k&&t.__k.__m&&(e.__m=t.__k.__m),ge&&ge(e,t)},W.__r=function(e){fe&&fe(e),V=0;var t=(H=e.__c).__H;t&&(oe==H?H.__h=[]:(t.__h.some(q),t.__h.some(Te),V=0),t.__h=[],t.__.some(function(e){e.__N&&(e.__=e.__N),e.u=e.__N=void 0})),oe=H},W.diffed=function(e){pe&&pe(e);var t=e.__c;t&&t.__H&&(t.__H.__h.length&&we(le.push(t)),t.__H.__.some(function(e){e.u&&(e.__H=e.u)})),oe=H=null},W.__c=function(e,t){t.some(function(e){try{e.__h.some(q),e.__h=e.__h.filter(function(e){return!e.__||Te(e)})}catch(t){e.__h=[function(){throw t}]}}),me&&me(e,t)},W.unmount=function(e){he&&he(e);var t,n,r=e.__c;r&&r.__H&&(r.__H.__.some(function(r){try{if(r.__P&&r.__c){if(n===void 0){for(n=e.__;n&&(!n.__c||!n.__c.__P);)n=n.__;n&&=n.__c}r.__P=n,we(ue.push(r))}else q(r)}catch(e){t=e}}),r.__H=void 0,t&&W.__e(t,r.__v))};var Se=typeof requestAnimationFrame==`function`;function Ce(e){var t,n=function(){clearTimeout(r),Se&&cancelAnimationFrame(t),setTimeout(e)},r=setTimeout(n,35);Se&&(t=requestAnimationFrame(n))}function we(e){e!=1&&se==W.requestAnimationFrame||((se=W.requestAnimationFrame)||Ce)(xe)}function q(e){var t=H,n=e.__c;typeof n==`function`&&(e.__c=void 0,n()),H=t}function Te(e){var t=H;e.__c=e.__(),H=t}function Ee(e,t){return!e||e.length!=t.length||t.some(function(t,n){return!ce(t,e[n])})}function De(e,t){return typeof t==`function`?t(e):t}var J=`/apisix/admin`,Oe=``,ke=()=>{};function Ae(e,t){Oe=e||``,t&&(ke=t)}async function Y(e,t,n){let r={Accept:`application/json`};n!==void 0&&(r[`Content-Type`]=`application/json`),e!==`GET`&&(r[`X-CSRF-Token`]=Oe);let i;try{i=await fetch(t,{method:e,headers:r,credentials:`same-origin`,body:n===void 0?void 0:JSON.stringify(n)})}catch(e){return{status:0,ok:!1,data:{error_msg:`cannot reach the node: ${e.message}`}}}let a=await i.text(),o=null;try{o=a?JSON.parse(a):null}catch{o={error_msg:a}}return i.status===401&&!t.startsWith(`/ui/api/session`)&&ke(),{status:i.status,ok:i.ok,data:o}}function X(e){let t=e.data;return t&&typeof t==`object`&&t.error_msg?t.description?`${t.error_msg}: ${t.description}`:t.error_msg:`HTTP ${e.status}`}function je(e,t){let n=t.key||``;if(e===`credentials`)return n.split(`/credentials/`)[1]||``;let r=`/apisix/${e}/`;return n.startsWith(r)?n.slice(r.length):n}function Z(e){let t=e.replace(/_/g,` `);return t===`ssls`?`SSLs`:t.charAt(0).toUpperCase()+t.slice(1)}function Me({id:e,label:t,onSearch:n}){let[r,i]=G(``);return B`<form class="search" role="search" onSubmit=${e=>{e.preventDefault(),n(r.trim())}}>
    <label for=${e}>${t}</label>
    <input id=${e} type="search" value=${r} onInput=${e=>i(e.currentTarget.value)} />
    <button type="submit">Search</button>
  </form>`}function Ne({page:e,size:t,total:n,setPage:r}){let i=Math.max(1,Math.ceil(n/t));return B`<nav class="pager" aria-label="Pages">
    <button type="button" disabled=${e<=1} onClick=${()=>r(e-1)}>Previous</button>
    <span>Page ${e} of ${i} · ${n} in all</span>
    <button type="button" disabled=${e>=i} onClick=${()=>r(e+1)}>Next</button>
  </nav>`}var Pe=20;function Fe(e,t,n){if(e&&typeof e==`object`&&!Array.isArray(e)){for(let r of Object.keys(e))Fe(e[r],t?`${t}.${r}`:r,n);!Object.keys(e).length&&t&&(n[t]=`{}`)}else t&&(n[t]=JSON.stringify(e));return n}function Ie(e,t){let n=Fe(e??{},``,{}),r=Fe(t??{},``,{}),i=[...new Set([...Object.keys(n),...Object.keys(r)])].sort(),a=[];for(let e of i)n[e]!==r[e]&&(e in n&&a.push([`-`,e,n[e]]),e in r&&a.push([`+`,e,r[e]]));return a}function Le(){let[e,t]=G(1),[n,r]=G(``),[i,a]=G(null),[o,s]=G(``);return K(()=>{(async()=>{let t=await Y(`GET`,`/ui/api/audit?page=${e}&page_size=${Pe}&q=${encodeURIComponent(n)}`);t.ok?(a(t.data),s(``)):s(X(t))})()},[e,n]),B`<section aria-labelledby="audit-title">
    <h1 id="audit-title">Audit log</h1>
    <${Me} id="audit-search" label=${`Search`} onSearch=${e=>{t(1),r(e)}} />
    ${o&&B`<p class="error" role="alert">${o}</p>`}
    ${i&&!i.enabled&&B`<p class="notice">The audit log is off on this node (deployment.admin.audit_log).</p>`}
    ${i&&B`<ol class="audit">
      ${i.list.length===0&&B`<li class="empty">No write recorded.</li>`}
      ${i.list.map(e=>B`<li>
        <details>
          <summary><time>${e.time}</time> · <strong>${e.key_name||`anonymous`}</strong>
            ${e.client?` from ${e.client}`:``} · <code>${e.method} ${e.path}</code> · revision ${e.revision}</summary>
          ${(e.changes||[]).map(e=>B`<div class="change"><h3>${e.key}
            ${e.before==null?` (created)`:e.after==null?` (deleted)`:``}</h3>
            <pre class="diff">${Ie(e.before,e.after).map(([e,t,n])=>B`<span class=${e===`+`?`add`:`del`}>${e} ${t}: ${n}\n</span>`)}</pre></div>`)}
        </details></li>`)}
    </ol>
    <${Ne} page=${e} size=${Pe} total=${i.total} setPage=${t} />`}
  </section>`}var Re=[`GET`,`POST`,`PUT`,`PATCH`,`DELETE`,`HEAD`,`OPTIONS`];function ze(){let[e,t]=G(`GET`),[n,r]=G(`/`),[i,a]=G(``),[o,s]=G(``),[c,l]=G(null),[u,d]=G(``),f=async t=>{t.preventDefault();let r=n.trim(),a=i.trim(),s=/^https?:\/\/([^/]+)(\/.*)?$/i.exec(r);s&&(a||=s[1],r=s[2]||`/`);let c=new URLSearchParams({uri:r,method:e});a&&c.set(`host`,a);for(let e of o.split(`
`)){let t=e.indexOf(`:`);t>0&&c.set(`header_${e.slice(0,t).trim()}`,e.slice(t+1).trim())}let u=await Y(`GET`,`${J}/explain?${c}`);u.ok?(d(``),l(u.data)):(d(X(u)),l(null))},p=c&&c.matched;return B`<section aria-labelledby="explain-title">
    <h1 id="explain-title">Explain a request</h1>
    <form class="explain" onSubmit=${f}>
      <div class="field"><label for="x-method">Method</label>
        <select id="x-method" value=${e} onChange=${e=>t(e.currentTarget.value)}>
          ${Re.map(e=>B`<option>${e}</option>`)}</select></div>
      <div class="field grow"><label for="x-url">URL or path</label>
        <input id="x-url" type="text" value=${n} onInput=${e=>r(e.currentTarget.value)} required /></div>
      <div class="field"><label for="x-host">Host</label>
        <input id="x-host" type="text" value=${i} onInput=${e=>a(e.currentTarget.value)} /></div>
      <div class="field wide"><label for="x-headers">Headers (Name: value, one per line)</label>
        <textarea id="x-headers" rows="3" value=${o} onInput=${e=>s(e.currentTarget.value)}></textarea></div>
      <button type="submit" class="primary">Explain</button>
    </form>
    ${u&&B`<p class="error" role="alert">${u}</p>`}
    ${c&&B`<div class="explain-result">
      <h2>Matched route</h2>
      ${p?B`<dl class="facts" id="matched">
          <dt>Route</dt><dd><a href=${`#/r/routes/edit/${p.route_id}`}>${p.route_id}</a>${p.name?` (${p.name})`:``}</dd>
          <dt>Matched uri</dt><dd>${p.matched_uri||``}</dd>
          ${p.matched_host&&B`<dt>Matched host</dt><dd>${p.matched_host}</dd>`}
          ${p.service_id&&B`<dt>Service</dt><dd>${p.service_id}</dd>`}
          <dt>Upstream</dt><dd>${p.upstream?B`${p.upstream.key}${p.upstream.type?` · ${p.upstream.type}`:``}
            ${(p.upstream.nodes||[]).map(e=>B`<span class="tag">${e.host}:${e.port} (weight ${e.weight})</span>`)}`:`none`}</dd>
          <dt>Plugin chain</dt><dd>${p.plugins&&p.plugins.length?B`<ol class="chain">${p.plugins.map(e=>B`<li>${e.phase}: ${e.name} (${e.priority})</li>`)}</ol>`:`no plugins`}</dd>
        </dl>`:B`<p id="matched" class="error">No route matches this request (404).</p>`}
      <h2>Candidates</h2>
      <table class="list"><thead><tr><th scope="col">Route</th><th scope="col">Result</th><th scope="col">Why</th></tr></thead>
        <tbody>${(c.candidates||[]).map(e=>B`<tr>
          <td>${e.route_id}${e.name?` (${e.name})`:``}</td><td><span class=${`tag ${e.result.replace(` `,`-`)}`}>${e.result}</span></td>
          <td><ul class="reasons">${(e.reasons||[]).map(e=>B`<li>${e}</li>`)}</ul></td></tr>`)}
          ${(c.candidates||[]).length===0&&B`<tr><td colspan="3" class="empty">No route's uri matches the path.</td></tr>`}
        </tbody></table>
      <details><summary>Raw answer</summary><pre>${JSON.stringify(c,null,2)}</pre></details>
    </div>`}
  </section>`}var Be=2e3,Ve=15;function He(e,t,n){let r=n.reduce((e,t)=>e+t,0);if(!r)return null;let i=e*r,a=0;for(let e=0;e<n.length;e++){if(a+n[e]>=i&&n[e]>0){let r=e===0?0:t[e-1];return r+((e<t.length?t[e]:t[t.length-1])-r)*((i-a)/n[e])}a+=n[e]}return t[t.length-1]}function Ue(e){return e.map((t,n)=>t-(n?e[n-1]:0))}function We(e){let t=e[e.length-1],n=e[0],r=new Map(n.routes.map(e=>[e.route,e])),i=Math.max(.001,t.time-n.time);return t.routes.map(t=>{let n=r.get(t.route),a=n&&e.length>1?t.total-n.total:0,o=n&&a>0?Ue(t.counts).map((e,t)=>e-Ue(n.counts)[t]):Ue(t.counts),s=e=>He(e,t.buckets,o);return{...t,rate:e.length>1?a/i:null,p50:s(.5),p90:s(.9),p99:s(.99),windowed:a>0}})}var Ge=e=>e===null?`–`:`${e<10?e.toFixed(1):Math.round(e)} ms`;function Ke(){let[e,t]=G([]),[n,r]=G([]),[i,a]=G(``),[o,s]=G(null),c=ye([]);K(()=>{let e=!1,n,i=async()=>{let[o,l]=await Promise.all([Y(`GET`,`/ui/api/metrics`),Y(`GET`,`/ui/api/health`)]);e||(o.ok?(c.current=[...c.current,o.data].slice(-15),t(c.current),a(``)):a(X(o)),l.ok&&Array.isArray(l.data)&&r(l.data),s(new Date),n=setTimeout(i,Be))};return i(),()=>{e=!0,clearTimeout(n)}},[]);let l=e[e.length-1],u=e.length?We(e):[];return B`<section aria-labelledby="live-title">
    <div class="bar"><h1 id="live-title">Live</h1>
      <p class="hint" aria-live="polite">${o?`Updated ${o.toLocaleTimeString()} · every ${Be/1e3} s`:`Loading…`}</p></div>
    ${i&&B`<p class="error" role="alert">${i}</p>`}
    ${l&&!l.enabled&&B`<p class="notice">The prometheus plugin is not loaded on this node:
      add it to the node config's <code>plugins</code> list to see traffic here.</p>`}
    <h2>Routes</h2>
    <p class="hint">Counted for routes that run the <code>prometheus</code> plugin (on the route, or in a global rule). Rates and percentiles over the last ${Ve*Be/1e3} s (since start when idle).</p>
    <table class="list" id="live-routes">
      <thead><tr><th scope="col">Route</th><th scope="col">Requests</th><th scope="col">req/s</th>
        <th scope="col">2xx</th><th scope="col">3xx</th><th scope="col">4xx</th><th scope="col">5xx</th>
        <th scope="col">p50</th><th scope="col">p90</th><th scope="col">p99</th></tr></thead>
      <tbody>
        ${u.length===0&&B`<tr><td colspan="10" class="empty">No request counted yet.</td></tr>`}
        ${u.map(e=>B`<tr data-route=${e.route}>
          <td>${e.route?B`<a href=${`#/r/routes/edit/${e.route}`}>${e.route}</a>`:`(no route)`}</td>
          <td class="num total">${e.total}</td><td class="num">${e.rate===null?`–`:e.rate.toFixed(2)}</td>
          <td class="num">${e.status[`2xx`]}</td><td class="num">${e.status[`3xx`]}</td>
          <td class="num">${e.status[`4xx`]}</td><td class="num">${e.status[`5xx`]}</td>
          <td class="num">${Ge(e.p50)}</td><td class="num">${Ge(e.p90)}</td><td class="num">${Ge(e.p99)}</td></tr>`)}
      </tbody>
    </table>
    <h2>Upstream health</h2>
    <p class="hint">Upstreams with health checks (<code>checks</code>) and more than one node.</p>
    <table class="list" id="live-health">
      <thead><tr><th scope="col">Upstream</th><th scope="col">Node</th><th scope="col">Status</th>
        <th scope="col">Successes</th><th scope="col">HTTP failures</th><th scope="col">TCP failures</th><th scope="col">Timeouts</th></tr></thead>
      <tbody>
        ${n.length===0&&B`<tr><td colspan="7" class="empty">No upstream has health checks.</td></tr>`}
        ${n.flatMap(e=>(e.nodes||[]).map(t=>B`<tr>
          <td>${e.name}</td><td>${t.ip}:${t.port}</td>
          <td><span class=${`tag ${t.status}`}>${t.status}</span></td>
          <td class="num">${(t.counter||{}).success??0}</td><td class="num">${(t.counter||{}).http_failure??0}</td>
          <td class="num">${(t.counter||{}).tcp_failure??0}</td><td class="num">${(t.counter||{}).timeout_failure??0}</td></tr>`))}
      </tbody>
    </table>
  </section>`}var qe=[`username`,`name`,`desc`,`uri`,`uris`,`host`,`hosts`,`methods`,`upstream_id`,`service_id`,`plugin_config_id`,`group_id`,`type`,`nodes`,`scheme`,`snis`,`cert`,`key`,`content`,`plugins`,`upstream`],Je=new Set([`id`,`create_time`,`update_time`]),Ye=new Set([`cert`,`key`,`content`,`certs`,`keys`]);function Xe(e){return e&&(e.type===`string`||e.type===`integer`||e.type===`number`)}function Ze(e){if(!e||typeof e!=`object`)return`json`;if(Array.isArray(e.enum))return`enum`;let t=e.anyOf||e.oneOf;if(!e.type&&Array.isArray(t)&&t.every(Xe)||e.type===`string`)return`text`;if(e.type===`integer`||e.type===`number`)return`number`;if(e.type===`boolean`)return`bool`;if(e.type===`array`&&e.items){if(Array.isArray(e.items.enum))return`enumlist`;if(e.items.type===`string`)return`list`}return`json`}function Qe(e){let t=e&&e.properties||{},n=Object.keys(t).filter(e=>!Je.has(e)),r=new Set(e&&e.required||[]),i=e=>r.has(e)?-1:qe.includes(e)?qe.indexOf(e):1e3;return n.sort((e,t)=>i(e)-i(t)||e.localeCompare(t)),{props:t,required:r,common:n.filter(e=>i(e)<1e3),more:n.filter(e=>i(e)>=1e3)}}function $e({id:e,value:t,onChange:n,invalid:r,describedBy:i,placeholder:a}){let[o,s]=G(t===void 0?``:JSON.stringify(t,null,2)),[c,l]=G(``);return K(()=>{let e=!1;try{e=o.trim()?JSON.stringify(JSON.parse(o))===JSON.stringify(t):t===void 0}catch{}!e&&!c&&s(t===void 0?``:JSON.stringify(t,null,2))},[JSON.stringify(t)]),B`<textarea id=${e} class="json" rows=${Math.min(12,Math.max(3,o.split(`
`).length))}
      value=${o} onInput=${e=>{let t=e.currentTarget.value;if(s(t),!t.trim())l(``),n(void 0);else try{n(JSON.parse(t)),l(``)}catch(e){l(`not valid JSON: ${e.message}`)}}} spellcheck="false" placeholder=${a||`JSON`}
      aria-invalid=${r||c?`true`:`false`} aria-describedby=${i}></textarea>
    ${c&&B`<p class="hint bad" role="status">${c}</p>`}`}function et({name:e,schema:t,value:n,set:r,error:i,readOnly:a,required:o}){let s=`f-${e}`,c=`err-${e}`,l=Ze(t),u=t&&t.description,d={id:s,disabled:a,"aria-invalid":i?`true`:`false`,"aria-describedby":i?c:void 0},f;if(l===`enum`){let e=t.enum,i=e.findIndex(e=>e===n);f=B`<select ...${d} value=${i<0?``:String(i)}
        onChange=${t=>r(t.currentTarget.value===``?void 0:e[Number(t.currentTarget.value)])}>
      <option value="">${t.default===void 0?`(unset)`:`(default: ${t.default})`}</option>
      ${e.map((e,t)=>B`<option value=${String(t)}>${String(e)}</option>`)}
    </select>`}else if(l===`text`){let i=e=>r(e.currentTarget.value===``?void 0:e.currentTarget.value);f=Ye.has(e)||(t.maxLength||0)>4096?B`<textarea ...${d} rows="4" value=${n??``} onInput=${i}></textarea>`:B`<input ...${d} type="text" value=${n??``} onInput=${i} />`}else if(l===`number`)f=B`<input ...${d} type="number" value=${n??``}
      step=${t.type===`integer`?`1`:`any`}
      onInput=${e=>{let t=e.currentTarget.value;r(t===``?void 0:Number(t))}} />`;else if(l===`bool`)f=B`<input ...${d} type="checkbox" checked=${!!n}
      onChange=${e=>r(e.currentTarget.checked?!0:void 0)} />`;else if(l===`list`)f=B`<textarea ...${d} rows="3" value=${Array.isArray(n)?n.join(`
`):``}
      onInput=${e=>{let t=e.currentTarget.value.split(`
`).map(e=>e.trim()).filter(Boolean);r(t.length?t:void 0)}}></textarea>
      <p class="hint">One per line.</p>`;else if(l===`enumlist`){let i=Array.isArray(n)?n:[];f=B`<div class="checks" role="group" aria-labelledby=${`lbl-${e}`}>
      ${t.items.enum.map(e=>B`<label class="check"><input type="checkbox" disabled=${a}
        checked=${i.includes(e)} onChange=${t=>{let n=t.currentTarget.checked?[...i,e]:i.filter(t=>t!==e);r(n.length?n:void 0)}} /> ${String(e)}</label>`)}
    </div>`}else f=B`<${$e} id=${s} value=${n} onChange=${r} invalid=${!!i}
      describedBy=${i?c:void 0}
      placeholder=${e===`nodes`?`{"127.0.0.1:1980": 1}`:`JSON`} />`;return B`<div class=${`field${i?` has-error`:``}`} data-field=${e}>
    <label id=${`lbl-${e}`} for=${l===`enumlist`?void 0:s}>${e}${o?` *`:``}</label>
    ${f}
    ${u&&B`<p class="hint">${u}</p>`}
    ${i&&B`<p id=${c} class="field-error" role="alert">${i}</p>`}
  </div>`}function tt({schema:e,value:t,onChange:n,errors:r,readOnly:i}){let{props:a,required:o,common:s,more:c}=Qe(e),l=e=>r=>{let i={...t};r===void 0?delete i[e]:i[e]=r,n(i)},u=e=>B`<${et} key=${e} name=${e} schema=${a[e]} value=${t[e]}
    set=${l(e)} error=${r[e]} readOnly=${i} required=${o.has(e)} />`,d=c.some(e=>t[e]!==void 0||r[e]);return B`<div class="schema-form">
    ${s.map(u)}
    ${c.length>0&&B`<details open=${d}><summary>More fields (${c.length})</summary>
      ${c.map(u)}</details>`}
    ${!s.length&&!c.length&&B`<p class="hint">This kind's schema has no fixed
      fields: use the JSON editor.</p>`}
  </div>`}function nt(e,t){let n=t&&t.properties||{},r=/property "([^"]+)"/.exec(e||``);if(r&&n[r[1]])return r[1];for(let[t,r]of[[`upstream_id`,/upstream id|upstream_id/],[`service_id`,/service id|service_id/],[`plugin_config_id`,/plugin_config|plugin config/],[`group_id`,/consumer group|group_id/],[`plugins`,/plugin/]])if(n[t]&&r.test(e||``))return t;return null}var Q=20;function rt(e,t){if(!t||typeof t!=`object`)return``;if(e===`routes`||e===`stream_routes`)return[...t.uri?[t.uri]:t.uris||[],t.upstream_id?`upstream ${t.upstream_id}`:``,t.service_id?`service ${t.service_id}`:``].filter(Boolean).join(` · `);if(e===`upstreams`&&t.nodes){let e=Array.isArray(t.nodes)?t.nodes.map(e=>`${e.host}:${e.port}`):Object.keys(t.nodes);return`${t.type||`roundrobin`} · ${e.join(`, `)}`}return e===`ssls`?(t.snis||[t.sni]).filter(Boolean).join(`, `):t.plugins?Object.keys(t.plugins).join(`, `):``}function it({kind:e,base:t,hrefBase:n,session:r,title:i,saved:a}){let[o,s]=G(1),[c,l]=G(``),[u,d]=G(null),[f,p]=G(``),[m,h]=G(null),[g,_]=G(a?`Saved ${a}.`:``),v=r.role===`viewer`,y=e===`consumers`||e===`credentials`||e===`secrets`||e===`plugin_metadata`,b=async()=>{let n=await Y(`GET`,t+(y?``:`?page=${o}&page_size=${Q}${c?`&name=${encodeURIComponent(c)}`:``}`));if(!n.ok){p(X(n)),d({list:[],total:0});return}p(``);let r=n.data&&n.data.list||[],i=n.data&&n.data.total||r.length;y&&(r=r.filter(t=>!c||JSON.stringify([je(e,t),t.value]).includes(c)),i=r.length,r=r.slice((o-1)*Q,o*Q)),d({list:r,total:i})};K(()=>{b()},[t,o,c]);let x=async(e,n)=>{let r=await Y(`DELETE`,`${t}/${e}${n?`?force=true`:``}`);r.ok?(h(null),_(`Deleted ${e}.`),b()):h({id:e,error:X(r),referenced:/still using|in use|referenced/i.test(X(r))})};return B`<section aria-labelledby="list-title">
    <div class="bar">
      <h1 id="list-title">${i||Z(e)}</h1>
      ${!v&&B`<a class="button primary" href=${`${n}/new`}>Create</a>`}
    </div>
    <${Me} id="search" label=${y?`Search`:`Search by name`} onSearch=${e=>{s(1),l(e)}} />
    ${g&&B`<p class="notice" role="status">${g}</p>`}
    ${f&&B`<p class="error" role="alert">${f}</p>`}
    ${u===null?B`<p>Loading…</p>`:B`
    <table class="list">
      <thead><tr><th scope="col">ID</th><th scope="col">Name</th><th scope="col">Summary</th>
        <th scope="col">Updated</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>
        ${u.list.length===0&&B`<tr><td colspan="5" class="empty">Nothing here yet.</td></tr>`}
        ${u.list.map(t=>{let r=je(e,t),i=t.value||{};return B`<tr key=${r} data-id=${r}>
            <td><a href=${`${n}/edit/${r}`}>${r}</a></td>
            <td>${i.name||i.username||i.desc||``}</td>
            <td class="summary">${rt(e,i)}</td>
            <td>${i.update_time?new Date(i.update_time*1e3).toLocaleString():``}</td>
            <td class="actions">
              <a class="button" href=${`${n}/edit/${r}`}>${v?`View`:`Edit`}</a>
              ${!v&&B`<button type="button" class="danger" onClick=${()=>h({id:r})}
                aria-label=${`Delete ${r}`}>Delete</button>`}
            </td>
          </tr>`})}
      </tbody>
    </table>
    <${Ne} page=${o} size=${Q} total=${u.total} setPage=${s} />`}
    ${m&&B`<div class="confirm" role="alertdialog" aria-labelledby="confirm-text">
      <p id="confirm-text">Delete ${Z(e).replace(/s$/,``).toLowerCase()} <strong>${m.id}</strong>?</p>
      ${m.error&&B`<p class="error" role="alert">${m.error}</p>`}
      <button type="button" class="danger" onClick=${()=>x(m.id,!1)}>Delete</button>
      ${m.referenced&&B`<button type="button" class="danger" onClick=${()=>x(m.id,!0)}>Delete anyway (force)</button>`}
      <button type="button" onClick=${()=>h(null)}>Cancel</button>
    </div>`}
  </section>`}function at(e){let t={...e||{}};return delete t.create_time,delete t.update_time,t}function $({kind:e,base:t,hrefBase:n,id:r,session:i,spec:a,children:o}){let s=i.role===`viewer`,[c,l]=G(null),[u,d]=G(null),[f,p]=G(``),[m,h]=G(``),[g,_]=G(``),[v,y]=G({}),[b,x]=G(``),[S,C]=G([]),[w,T]=G(!1);K(()=>{(async()=>{let n=await Y(`GET`,`${J}/schema/${e}`);l(n.ok?n.data:{properties:{}});let i=await Y(`GET`,`${J}/plugins/list`);if(C(i.ok&&Array.isArray(i.data)?i.data:[]),r){let n=await Y(`GET`,`${t}/${r}`);if(!n.ok){x(X(n)),d({});return}let i=at(n.data.value);e!==`consumers`&&delete i.id,d(i),h(JSON.stringify(i,null,2))}else d({}),h(`{}`)})()},[e,r,t]);let E=e=>{d(e),h(JSON.stringify(e,null,2)),_(``)},D=e=>{let t=e.currentTarget.value;h(t);try{let e=JSON.parse(t);if(!e||typeof e!=`object`||Array.isArray(e))throw Error(`must be an object`);d(e),_(``)}catch(e){_(`not valid JSON: ${e.message}`)}},O=async i=>{if(i.preventDefault(),g){x(`The JSON editor holds invalid JSON.`);return}T(!0);let a,o=r||f.trim();if(a=e===`consumers`?await Y(`PUT`,t,u):o?await Y(`PUT`,`${t}/${o}`,u):await Y(`POST`,t,u),T(!1),a.ok){location.hash=`${n}?saved=${encodeURIComponent(je(e,a.data||{})||o)}`;return}let s=X(a),l=nt(s,c);y(l?{[l]:s}:{}),x(l?`Not saved: see the field ${l}.`:s)},k=e=>{let t=e.currentTarget.value;e.currentTarget.value=``,t&&E({...u,plugins:{...u.plugins||{},[t]:(u.plugins||{})[t]||{}}})};if(c===null||u===null)return B`<p>Loading…</p>`;let A=a&&a.two_part_id?`ID (manager/id, e.g. vault/1)`:e===`plugin_metadata`?`Plugin name`:`ID`,j=e===`plugin_metadata`||e===`credentials`||a&&!a.post&&e!==`consumers`;return B`<section aria-labelledby="editor-title">
    <div class="bar">
      <h1 id="editor-title">${r?`${s?``:`Edit `}${Z(e).replace(/s$/,``)} ${r}`:`New ${Z(e).replace(/s$/,``).toLowerCase()}`}</h1>
      <a class="button" href=${n}>Back to the list</a>
    </div>
    ${s&&B`<p class="notice">Read-only: your key has the viewer role.</p>`}
    <form onSubmit=${O} aria-describedby=${b?`form-error`:void 0}>
      ${b&&B`<p id="form-error" class="error" role="alert">${b}</p>`}
      ${!r&&e!==`consumers`&&B`<div class="field">
        <label for="f-__id">${A}${j?` *`:` (empty: generated)`}</label>
        <input id="f-__id" type="text" value=${f} onInput=${e=>p(e.currentTarget.value)} required=${j} />
      </div>`}
      <div class="editor">
        <fieldset class="pane">
          <legend>Form</legend>
          <${tt} schema=${c} value=${u} onChange=${E} errors=${v} readOnly=${s} />
          ${!s&&c.properties&&c.properties.plugins&&B`<div class="field">
            <label for="add-plugin">Add a plugin</label>
            <select id="add-plugin" onChange=${k}>
              <option value="">(choose)</option>
              ${S.map(e=>B`<option value=${e}>${e}</option>`)}
            </select>
          </div>`}
        </fieldset>
        <fieldset class="pane">
          <legend>JSON</legend>
          <label for="raw-json" class="sr-only">Raw JSON</label>
          <textarea id="raw-json" class="json raw" value=${m} onInput=${D} readOnly=${s}
            spellcheck="false" aria-invalid=${g?`true`:`false`}></textarea>
          ${g&&B`<p class="hint bad" role="status">${g}</p>`}
        </fieldset>
      </div>
      ${!s&&B`<div class="bar"><button type="submit" class="primary" disabled=${w}>Save</button></div>`}
    </form>
    ${o}
  </section>`}function ot(){let[e,t]=G(location.hash||`#/r/routes`);return K(()=>{let e=()=>t(location.hash||`#/r/routes`);return addEventListener(`hashchange`,e),()=>removeEventListener(`hashchange`,e)},[]),e}function st({onIn:e,expired:t}){let[n,r]=G(``),[i,a]=G(t?`Your session ended: sign in again.`:``),[o,s]=G(!1),c=ye(null);return K(()=>{c.current&&c.current.focus()},[]),B`<main class="signin">
    <form onSubmit=${async t=>{t.preventDefault(),s(!0);let i=await Y(`POST`,`/ui/api/session`,{key:n});s(!1),r(``),i.ok?e(i.data):a(i.status===401?`Wrong key.`:X(i))}} aria-labelledby="signin-title">
      <h1 id="signin-title">Pylon dashboard</h1>
      <p>Sign in with an Admin API key (<code>deployment.admin.admin_key</code>). The key is
        exchanged for a session; it is not kept in this page.</p>
      ${i&&B`<p class="error" role="alert">${i}</p>`}
      <div class="field">
        <label for="key">Admin API key</label>
        <input id="key" ref=${c} type="password" autocomplete="current-password" value=${n}
          onInput=${e=>r(e.currentTarget.value)} required />
      </div>
      <button type="submit" class="primary" disabled=${o}>Sign in</button>
    </form>
  </main>`}function ct(e,t){let[n,r]=e.replace(/^#/,``).split(`?`),i=new URLSearchParams(r||``).get(`saved`)||``,a=n.split(`/`).filter(Boolean).map(decodeURIComponent),o=Object.fromEntries(t.kinds.map(e=>[e.name,e]));if(a[0]===`explain`)return B`<${ze} />`;if(a[0]===`live`)return B`<${Ke} />`;if(a[0]===`audit`)return B`<${Le} />`;if(a[0]===`c`&&a[1]){let n=a[1],r=`${J}/consumers/${encodeURIComponent(n)}/credentials`,s=`#/c/${encodeURIComponent(n)}`;return a[2]===`new`||a[2]===`edit`?B`<${$} key=${e} kind="credentials" base=${r} hrefBase=${s}
        id=${a[2]===`edit`?a.slice(3).join(`/`):null} session=${t} spec=${{post:!1}} />`:lt(n,t,o,i)}let s=a[0]===`r`&&o[a[1]]?a[1]:`routes`,c=`${J}/${s}`,l=`#/r/${s}`;if(a[2]===`new`)return B`<${$} key=${e} kind=${s} base=${c} hrefBase=${l} id=${null} session=${t} spec=${o[s]} />`;if(a[2]===`edit`&&a[3]){let n=a.slice(3).join(`/`);return s===`consumers`?lt(n,t,o,``):B`<${$} key=${e} kind=${s} base=${c} hrefBase=${l} id=${n} session=${t} spec=${o[s]} />`}return B`<${it} key=${e} kind=${s} base=${c} hrefBase=${l} session=${t} saved=${i} />`}function lt(e,t,n,r){let i=`${J}/consumers/${encodeURIComponent(e)}/credentials`;return B`<${$} key=${`consumer-${e}`} kind="consumers" base=${`${J}/consumers`}
      hrefBase="#/r/consumers" id=${e} session=${t} spec=${n.consumers}>
    <${it} kind="credentials" base=${i} hrefBase=${`#/c/${encodeURIComponent(e)}`}
      session=${t} title=${`Credentials of ${e}`} saved=${r} />
  <//>`}function ut({session:e,onOut:t}){let n=ot(),r=n.replace(/^#/,``).split(`?`)[0],i=(e,t)=>B`<li><a href=${e} aria-current=${r===e.slice(1)||r.startsWith(`${e.slice(1)}/`)?`page`:void 0}>${t}</a></li>`;return B`<div class="shell">
    <a class="skip" href="#main">Skip to content</a>
    <header class="top">
      <span class="brand">Pylon</span>
      <span class="who">Signed in as <strong>${e.name}</strong>
        <span class=${`role ${e.role}`}>${e.role}</span></span>
      <button type="button" onClick=${async()=>{await Y(`DELETE`,`/ui/api/session`),t()}}>Sign out</button>
    </header>
    <nav class="side" aria-label="Sections">
      <h2>Resources</h2>
      <ul>${e.kinds.map(e=>i(`#/r/${e.name}`,Z(e.name)))}</ul>
      <h2>Operate</h2>
      <ul>${i(`#/live`,`Live`)}${i(`#/explain`,`Explain`)}${i(`#/audit`,`Audit log`)}</ul>
    </nav>
    <main id="main" tabindex="-1">${ct(n,e)}</main>
  </div>`}function dt(){let[e,t]=G(void 0),[n,r]=G(!1),i=e=>{Ae(e.csrf,()=>{r(!0),t(null)}),r(!1),t(e)};return K(()=>{(async()=>{let e=await Y(`GET`,`/ui/api/session`);e.ok?i(e.data):t(null)})()},[]),e===void 0?B`<p class="loading">Loading…</p>`:e===null?B`<${st} onIn=${i} expired=${n} />`:B`<${ut} session=${e} onOut=${()=>{Ae(``),t(null)}} />`}R(B`<${dt} />`,document.getElementById(`app`));