var e,t,n,r,i,a,o,s,c,l,u=Symbol.for(`pv`),d={},f=[],p=/^m(i|n|o|s|text|space)$/,m=Array.isArray,h=f.slice,g=Object.assign;function _(e){e&&e.parentNode&&e.remove()}function v(e,t,n){var r,i,a,o={},s=arguments.length;for(a in t)a==`key`?r=t[a]:a==`ref`&&typeof e!=`function`?i=t[a]:o[a]=t[a];return s>2&&(o.children=s>3?h.call(arguments,2):n),y(e,o,r,i,null)}function y(n,r,i,a,o){var s={type:n,props:r,key:i,ref:a,__k:null,__:null,__b:0,__e:null,__c:null,constructor:u,__v:o||++t,__i:-1,__u:0};return!o&&e.vnode&&e.vnode(s),s}function b(e){return e.children}function x(e,t){this.props=e,this.context=t,this.__g=0}function S(e,t){if(t==null)return e.__&&S(e.__,e.__i+1);for(var n;t<e.__k.length;t++)if((n=e.__k[t])&&n.__e)return n.__e;return typeof e.type!=`function`||e.props.__P?null:S(e)}function C(t){var n,r=t.__v,i=r.__e,a=[],o=[],s=t.__P;s&&((n=g({constructor:u},r)).__v=r.__v+1,e.vnode&&e.vnode(n),N(s,n,r,t.__n,s.namespaceURI,32&r.__u?[i]:null,a,i||S(r),32&r.__u,o),n.__v=r.__v,n.__.__k[n.__i]=n,F(a,n,o),r.__=r.__e=null,n.__e!=i&&w(n))}function w(e){if((e=e.__)&&e.__c&&!e.props.__P)return e.__e=null,e.__k.some(function(t){return t&&(e.__e=t.__e)}),w(e)}function T(t){(8&t.__g||(t.__g|=8,n.push(t),i++))&&r==e.debounceRendering||((r=e.debounceRendering)||queueMicrotask)(E)}function E(){try{for(var e,t=1;n.length;)n.length>t&&n.sort(a),e=n.shift(),t=n.length,8&e.__g&&C(e)}finally{(i=n.length)&&(r||queueMicrotask)(E)}}function ee(e,t,n,r,i,a,o,s,c,l,u){var p,m,h,g,_,v,y=r.__k||f,b=t.length;for(c=D(n,t,y,c,b),p=0;p<b;p++)(h=n.__k[p])!=null&&(m=~h.__i&&y[h.__i]||d,h.__i=p,v=N(e,h,m,i,a,o,s,c,l,u),g=h.__e,(m.ref!=h.ref||8&m.__u)&&(m.ref&&I(m.ref,null,h,m),h.ref&&u.push(h.ref,h.__c||g,h)),_||=g,4&h.__u?(c=O(h,c,e,!m.__v),m.__e&&(m.__e=null)):typeof h.type==`function`&&v!==void 0?c=v:g&&(c=g.nextSibling),h.__u&=-21);return n.__e=_,c}function D(e,t,n,r,i){var a,o,s,c,l,d,f,p,h,g=n.length,_=g,v=0,x=0,C=e.__k=Array(i);for(a=0;a<i;a++)(o=t[a])!=null&&typeof o!=`boolean`&&typeof o!=`function`?(typeof o!=`object`||o.constructor===String?o=C[a]=y(null,o):m(o)?o=C[a]=y(b,{children:o}):o.constructor===u&&o.__b?o=C[a]=y(o.type,o.props,o.key,o.ref,o.__v):C[a]=o,c=a+v,o.__=e,o.__b=e.__b+1,s=null,~(l=o.__i=k(o,n,c,_))&&(_--,(s=n[l])&&(s.__u|=2)),s&&s.__v?(o.__u|=16,l==c-1?v--:l==c+1?v++:l!=c&&(l>c?v--:v++,x=1)):(~l||(i>g?v--:i<g&&v++),typeof o.type!=`function`&&(o.__u|=4))):C[a]=null;if(x){for(d=[],f=[],a=0;a<i;a++)if((o=C[a])&&16&o.__u){for(v=0,p=d.length;v<p;)d[h=v+p>>1]<o.__i?v=h+1:p=h;d[v]=o.__i,f[a]=v+1}for(v=d.length;a--;)f[a]&&(f[a]==v?v--:C[a].__u|=4)}if(_)for(a=0;a<g;a++)!(s=n[a])||2&s.__u||(s.__e==r&&(r=S(s)),re(s,s));return r}function O(e,t,n,r){var i,a,o,s;if(typeof e.type==`function`){if(e.props.__P)return t;if(i=e.__k)for(a=0;a<i.length;a++)i[a]&&(i[a].__=e,t=O(i[a],t,n,!1));return t}for(t&&!t.parentNode&&(t=S(e))&&!t.parentNode&&(t=null),o=e.__e,s=t;s&&s.nodeType==8;)s=s.nextSibling;for(o!=s&&(!r&&n.moveBefore&&o.parentNode?n.moveBefore(o,t):n.insertBefore(o,t||null)),t=o;(t&&=t.nextSibling)&&t.nodeType==8&&!t.data.startsWith(`$s`););return t}function k(e,t,n,r){var i,a=e.key,o=e.type,s=t[n],c=s&&!(2&s.__u);if(s===null&&a==null||c&&a==s.key&&o==s.type)return n;if(r>+!!c){for(i=n-1;i>=0;i--)if((s=t[i])&&!(2&s.__u)&&a==s.key&&o==s.type)return i;for(i=n+1;i<t.length;i++)if((s=t[i])&&!(2&s.__u)&&a==s.key&&o==s.type)return i}return-1}function A(e,t,n){n??=``,t[0]==`-`?e.setProperty(t,n):e[t]=n}function j(e,t,n,r,i){var a,o;if(t==`style`){if(typeof n==`string`)e.style.cssText=n;else{if(typeof r==`string`&&(e.style.cssText=r=``),r)for(t in r)n&&t in n||A(e.style,t);if(n)for(t in n)r&&n[t]==r[t]||A(e.style,t,n[t])}}else if(t[0]==`o`&&t[1]==`n`)typeof n!=`function`&&(n=null),typeof r!=`function`&&(r=null),(e.__e||={})[t]=n,n&&r||(o=l[t]||(l[t]=M(t)),(e.__a||={})[t]=c,a=t!=(t=t.replace(s,`$1`)),(t=t.slice(2))[0]<`a`&&(t=t.toLowerCase()),n?e.addEventListener(t,o,a):e.removeEventListener(t,o,a));else{if(i==`http://www.w3.org/2000/svg`)t=t.replace(/xlink(H|:h)/,`h`).replace(/sName$/,`s`);else if(t!=`width`&&t!=`height`&&t!=`href`&&t!=`list`&&t!=`form`&&t!=`tabIndex`&&t!=`download`&&t!=`rowSpan`&&t!=`colSpan`&&t!=`role`&&t!=`popover`&&t in e)try{e[t]=n??``;return}catch{}if(typeof n==`function`)return;n==null||!1===n&&t[4]!=`-`?e.removeAttribute(t):e.setAttribute(t,t==`popover`&&n==1?``:n)}}function M(t){return function(n){var r=this.__e;if(r){if(r=r[t],n[o]==null)n[o]=c++;else if(n[o]<this.__a[t])return;return r(e.event?e.event(n):n)}}}function N(t,n,r,i,a,o,s,c,l,d){var p,h,v,y,C,w,T,E,D,O,k,A,j,M,N,F,I,L,R=n.type;if(n.constructor!==u)return null;128&r.__u&&(l=32&r.__u,p=r.__c.__z)&&(n.__u|=l,h=o=[],p.nodeType==8?c=P(p,o):o.push(p),c=o[0]||c),(p=e.__b)&&p(n);e:if(typeof R==`function`){v=s.length;try{if(E=n.props,D=(p=R.prototype)&&p.render,O=(p=R.contextType)&&i[p.__c],k=p?O?O.props.value:p.__:i,(y=r.__c)?(n.__c=y,2&y.__g&&(y.__g|=1)):(D?n.__c=y=new R(E,k):(n.__c=y=new x(E,k),y.constructor=R,y.render=ie),O&&O.sub(y),y.state||(y.state={}),y.__n=i,y.__g|=8,y.__h=[],y.__k=[]),D&&(y.__s||(y.__s=y.state),R.getDerivedStateFromProps&&(y.__s==y.state&&(y.__s=g({},y.__s)),g(y.__s,R.getDerivedStateFromProps(E,y.__s)))),C=y.props,w=y.state,y.__v=n,r.__c){if(E!==C&&D&&!R.getDerivedStateFromProps&&y.componentWillReceiveProps&&y.componentWillReceiveProps(E,k),n.__v==r.__v&&!(8&y.__g)||!(4&y.__g)&&y.shouldComponentUpdate&&!1===y.shouldComponentUpdate(E,y.__s,k)){n.__v!=r.__v&&(y.props=E,y.state=y.__s,y.__g&=-9),n.__e=r.__e,n.__k=r.__k,n.__k.some(function(e){e&&(e.__=n)}),f.push.apply(y.__h,y.__k),y.__k=[],y.__h.length&&s.push(y),c=S(r);break e}y.componentWillUpdate&&y.componentWillUpdate(E,y.__s,k),D&&y.componentDidUpdate&&y.__h.push(function(){y.componentDidUpdate(C,w,T)})}else D&&!R.getDerivedStateFromProps&&y.componentWillMount&&y.componentWillMount(),D&&y.componentDidMount&&y.__h.push(y.componentDidMount);y.context=k,y.props=E,y.__P=t,y.__g&=-5,A=e.__r,j=D?25:0;do y.__g&=-9,A&&A(n),p=y.render(y.props,y.state=y.__s,y.context);while(8&y.__g&&++j<25);D&&(f.push.apply(y.__h,y.__k),y.__k=[]),y.state=y.__s,y.getChildContext&&(i=g({},i,y.getChildContext())),D&&r.__c&&y.getSnapshotBeforeUpdate&&(T=y.getSnapshotBeforeUpdate(C,w)),M=p&&p.type===b&&p.key==null?p.props.children:p,E.__P&&(p=c,a=(t=E.__P).namespaceURI,l=o=null,r.props&&r.props.__P!=t&&(r.__k.some(function(e){e&&re(e,e)}),r.__k=null),c=r.__k?S(r,0):null),c=ee(t,m(M)?M:[M],n,r,i,a,o,s,c,l,d),E.__P&&(n.__e=null,c=p),n.__u&=-161,h&&h.some(_),y.__h.length&&s.push(y),1&y.__g&&(y.__g&=-4)}catch(t){if(s.length=v,n.__v=null,l||o){if(t&&t.then){if(n.__u|=128|l,o){for(~(I=o.indexOf(c||void 0))||(I=o.length);(L=o[I-1])&&L.nodeType==8;)I--;for(;I<o.length;I++)if(L=o[I]){if(o[I]=null,N){if(L==F)break}else{if(L.nodeType!=8)break;L.data.startsWith(`$s`)&&(F=P(N=L))}}}if(!N){for(;c&&c.nodeType==8&&c.nextSibling;)c=c.nextSibling;N=c}(p=P(N=n.__c.__z||(n.__c.__z=N)))?(n.__e=N,c=p):n.__e=c,c&&=c.nextSibling}else o&&o.some(_)}else n.__e=r.__e;n.__k||=r.__k||[],t&&t.then||te(n),e.__e(t,n,r)}}else c=n.__e=ne(r.__e,n,r,i,a,o,s,l,d,t);return(p=e.diffed)&&p(n),c}function P(e,t){if(e&&e.nodeType==8&&e.data.startsWith(`$s`))for(var n=1;e=e.nextSibling;){if(e.nodeType==8){if(e.data.startsWith(`$s`))n++;else if(e.data.startsWith(`/$s`)&&!--n)return e}t&&t.push(e)}}function te(e){e&&(e.__c&&(e.__c.__g|=4),e.__k&&e.__k.some(te))}function F(t,n,r){for(var i=0;i<r.length;)I(r[i++],r[i++],r[i++]);e.__c&&e.__c(n,t),t.some(function(n){try{t=n.__h,n.__h=[],t.some(function(e){e.call(n)})}catch(t){e.__e(t,n.__v)}})}function ne(t,n,r,i,a,o,s,c,l,u){var f,g,v,y,b,x,C,w,T=r.props||d,E=n.props,D=n.type;if(D==`svg`?a=`http://www.w3.org/2000/svg`:D==`math`?a=`http://www.w3.org/1998/Math/MathML`:a||=`http://www.w3.org/1999/xhtml`,o){for(f=0;f<o.length;f++)if((b=o[f])&&(D?b.localName==D:b.nodeType==3)){t=b,o[f]=null;break}}if(!t){if(w=u.ownerDocument||document,!D)return w.createTextNode(E);t=w.createElementNS(a,D,E.is?E:u),c&&=(e.__m&&e.__m(n,o),!1),o=null}if(D){if(u=D==`template`&&t.content||t,o=D==`textarea`&&E.defaultValue!=null?null:o&&h.call(u.childNodes),!c&&o)for(T={},f=0;f<t.attributes.length;f++)T[(b=t.attributes[f]).name]=b.value;for(f in T)b=T[f],f==`dangerouslySetInnerHTML`?v=b:f==`children`||f in E||f==`value`&&`defaultValue`in E||f==`checked`&&`defaultChecked`in E||j(t,f,null,b,a);for(f in E)b=E[f],f==`children`?y=b:f==`dangerouslySetInnerHTML`?g=b:f==`value`?x=b:f==`checked`?C=b:c&&typeof b!=`function`||T[f]===b||j(t,f,b,T[f],a);g?(c||v&&(g.__html==v.__html||g.__html==t.innerHTML)||(t.innerHTML=g.__html),n.__k=[]):(v&&(t.textContent=``),(D==`foreignObject`||a==`http://www.w3.org/1998/Math/MathML`&&p.test(D))&&(a=`http://www.w3.org/1999/xhtml`),ee(u,m(y)?y:[y],n,r,i,a,o,s,o?o[0]:r.__k&&S(r,0),c,l),o&&o.some(_)),c&&D!=`textarea`||(f=`value`,D==`progress`&&x==null?t.removeAttribute(f):x==null||x===t[f]&&(D!=`progress`||x)||j(t,f,x,T[f],a),f=`checked`,C!=null&&C!=t[f]&&j(t,f,C,T[f],a))}else T===E||c&&t.data==E||(t.data=E);return t}function I(t,n,r,i){try{typeof t==`function`?n?n.__x=t(n)||1:(i&&=i.__c||i.__e)&&(n=i.__x)&&(i.__x=null,typeof n==`function`?n():t(null)):t.current=n}catch(t){e.__e(t,r)}}function re(t,n,r){var i,a,o,s;if(e.unmount&&e.unmount(t),!(i=t.ref)||i.current&&i.current!=t.__e||I(i,null,n,t),i=t.__c){if(i.componentWillUnmount)try{i.componentWillUnmount()}catch(t){e.__e(t,n)}i.__P=i.__n=null}if(i=t.__k)for(s=0;s<i.length;s++)i[s]&&re(i[s],n,typeof t.type!=`function`||r&&!t.props.__P);!r&&(i=t.__c)&&(i=i.__z)&&(a=P(i,o=[]))&&(i==t.__e&&o.some(_),_(a),_(i)),r||_(t.__e),t.__e=t.__c=t.__=null}function ie(e,t,n){return this.constructor(e,n)}function L(t,n){var r,i,a,o;e.__&&e.__(t,n),n.nodeType==9&&(n=n.documentElement),i=(r=t&&32&t.__u)?null:n.__k,n.__k=y(b,{children:[t]}),a=[],o=[],N(n,n.__k,i||d,d,n.namespaceURI,i?null:n.firstChild?h.call(n.childNodes):null,a,i?i.__e:n.firstChild,r,o),F(a,n.__k,o),n.__k.props.children=null}e={__e:function(e,t,n,r){for(var a,o,s;t=t.__;)if((a=t.__c)&&!(1&a.__g)){a.__g|=4;try{if((s=(o=a.constructor)&&o.getDerivedStateFromError)&&a.setState(o.getDerivedStateFromError(e)),a.componentDidCatch&&(a.componentDidCatch(e,r||{}),s=1),s&&8&a.__g)return void(a.__g|=2)}catch(t){e=t}}throw i=0,e}},t=0,x.prototype.setState=function(e,t){var n=this.__s;n&&n!=this.state||(n=this.__s=g({},this.state)),typeof e==`function`&&(e=e(g({},n),this.props)),e&&(g(n,e),this.__v&&(t&&this.__k.push(t),T(this)))},x.prototype.forceUpdate=function(e){this.__v&&(this.__g|=4,e&&this.__h.push(e),T(this))},x.prototype.render=b,n=[],i=0,a=function(e,t){return e.__v.__b-t.__v.__b},o=Symbol(),s=/(PointerCapture)$|Capture$/i,c=0,l={};var R=function(e,t,n,r){var i;t[0]=0;for(var a=1;a<t.length;a++){var o=t[a++],s=t[a]?(t[0]|=o?1:2,n[t[a++]]):t[++a];o===3?r[0]=s:o===4?r[1]=Object.assign(r[1]||{},s):o===5?(r[1]=r[1]||{})[t[++a]]=s:o===6?r[1][t[++a]]+=s+``:o?(i=e.apply(s,R(e,s,n,[``,null])),r.push(i),s[0]?t[0]|=2:(t[a-2]=0,t[a]=i)):r.push(s)}return r},ae=new Map;function oe(e){var t=ae.get(this);return t||(t=new Map,ae.set(this,t)),(t=R(this,t.get(e)||(t.set(e,t=function(e){for(var t,n,r=1,i=``,a=``,o=[0],s=function(e){r===1&&(e||(i=i.replace(/^\s*\n\s*|\s*\n\s*$/g,``)))?o.push(0,e,i):r===3&&(e||i)?(o.push(3,e,i),r=2):r===2&&i===`...`&&e?o.push(4,e,0):r===2&&i&&!e?o.push(5,0,!0,i):r>=5&&((i||!e&&r===5)&&(o.push(r,0,i,n),r=6),e&&(o.push(r,e,0,n),r=6)),i=``},c=0;c<e.length;c++){c&&(r===1&&s(),s(c));for(var l=0;l<e[c].length;l++)t=e[c][l],r===1?t===`<`?(s(),o=[o],r=3):i+=t:r===4?i===`--`&&t===`>`?(r=1,i=``):i=t+i[0]:a?t===a?a=``:i+=t:t===`"`||t===`'`?a=t:t===`>`?(s(),r=1):r&&(t===`=`?(r=5,n=i,i=``):t===`/`&&(r<5||e[c][l+1]===`>`)?(s(),r===3&&(o=o[0]),r=o,(o=o[0]).push(2,0,r),r=0):t===` `||t===`	`||t===`
`||t===`\r`?(s(),r=2):i+=t),r===3&&i===`!--`&&(r=4,o=o[0])}return s(),o}(e)),t),arguments,[])).length>1?t:t[0]}var z=oe.bind(v),B,V,se,ce,le=Object.is,H=0,ue=[],de=[],U=e,fe=U.__b,pe=U.__r,me=U.diffed,he=U.__c,ge=U.unmount,_e=U.__;function ve(e,t){U.__h&&U.__h(V,e,H||t),H=0;var n=V.__H||(V.__H={__:[],__h:[]});return e>=n.__.length&&n.__.push({}),n.__[e]}function W(e){return H=1,ye(Oe,e)}function ye(e,t,n){var r=ve(B++,2);if(r.t=e,!r.__c&&(r.__=[n?n(t):Oe(void 0,t),function(e){var t=(r.__N||r.__)[0],n=r.t(t,e);le(t,n)||(r.__N=[n,r.__[1]],r.__c.setState({}))}],r.__c=V,!V.__f)){V.__f=!0;var i=V.shouldComponentUpdate;V.shouldComponentUpdate=function(e,t,n){var r=this.__H;if(!r)return!0;var a=!1,o=this.props!=e;if(r.__.some(function(e){e.__N&&(a=!0,le(e.__[0],e.__N[0])||(o=!0))}),i){var s=i.call(this,e,t,n);return a?s||o:s}return!a||o}}return r.__}function G(e,t){var n=ve(B++,3);!U.__s&&De(n.__H,t)&&(n.__P=!0,n.__=e,n.u=t,V.__H.__h.push(n))}function be(e){return H=5,xe(function(){return{current:e}},[])}function xe(e,t){var n=ve(B++,7);return De(n.__H,t)&&(n.__=e(),n.__H=t),n.__}function Se(){var e;do{for(;e=de.shift();)try{K(e)}catch(t){U.__e(t,{__:(e=e.__P)&&e.__v})}for(;e=ue.shift();){var t=e.__H;if(e.__P&&t)try{t.__h.some(K),t.__h.some(Ee),t.__h=[]}catch(n){t.__h=[],U.__e(n,e.__v)}}}while(de.length)}U.__b=function(e){V=null,fe&&fe(e)},U.__=function(e,t){e&&t.__k&&t.__k.__m&&(e.__m=t.__k.__m),_e&&_e(e,t)},U.__r=function(e){pe&&pe(e),B=0;var t=(V=e.__c).__H;t&&(se==V?V.__h=[]:(t.__h.some(K),t.__h.some(Ee),B=0),t.__h=[],t.__.some(function(e){e.__N&&(e.__=e.__N),e.u=e.__N=void 0})),se=V},U.diffed=function(e){me&&me(e);var t=e.__c;t&&t.__H&&(t.__H.__h.length&&Te(ue.push(t)),t.__H.__.some(function(e){e.u&&(e.__H=e.u)})),se=V=null},U.__c=function(e,t){t.some(function(e){try{e.__h.some(K),e.__h=e.__h.filter(function(e){return!e.__||Ee(e)})}catch(t){e.__h=[function(){throw t}]}}),he&&he(e,t)},U.unmount=function(e){ge&&ge(e);var t,n,r=e.__c;r&&r.__H&&(r.__H.__.some(function(r){try{if(r.__P&&r.__c){if(n===void 0){for(n=e.__;n&&(!n.__c||!n.__c.__P);)n=n.__;n&&=n.__c}r.__P=n,Te(de.push(r))}else K(r)}catch(e){t=e}}),r.__H=void 0,t&&U.__e(t,r.__v))};var Ce=typeof requestAnimationFrame==`function`;function we(e){var t,n=function(){clearTimeout(r),Ce&&cancelAnimationFrame(t),setTimeout(e)},r=setTimeout(n,35);Ce&&(t=requestAnimationFrame(n))}function Te(e){e!=1&&ce==U.requestAnimationFrame||((ce=U.requestAnimationFrame)||we)(Se)}function K(e){var t=V,n=e.__c;typeof n==`function`&&(e.__c=void 0,n()),V=t}function Ee(e){var t=V;e.__c=e.__(),V=t}function De(e,t){return!e||e.length!=t.length||t.some(function(t,n){return!le(t,e[n])})}function Oe(e,t){return typeof t==`function`?t(e):t}var q=`/apisix/admin`,ke=``,Ae=()=>{};function je(e,t){ke=e||``,t&&(Ae=t)}async function J(e,t,n){let r={Accept:`application/json`};n!==void 0&&(r[`Content-Type`]=`application/json`),e!==`GET`&&(r[`X-CSRF-Token`]=ke);let i;try{i=await fetch(t,{method:e,headers:r,credentials:`same-origin`,body:n===void 0?void 0:JSON.stringify(n)})}catch(e){return{status:0,ok:!1,data:{error_msg:`cannot reach the node: ${e.message}`}}}let a=await i.text(),o=null;try{o=a?JSON.parse(a):null}catch{o={error_msg:a}}return i.status===401&&!t.startsWith(`/ui/api/session`)&&Ae(),{status:i.status,ok:i.ok,data:o}}function Y(e){let t=e.data;return t&&typeof t==`object`&&t.error_msg?t.description?`${t.error_msg}: ${t.description}`:t.error_msg:`HTTP ${e.status}`}function Me(e,t){let n=t.key||``;if(e===`credentials`)return n.split(`/credentials/`)[1]||``;let r=`/apisix/${e}/`;return n.startsWith(r)?n.slice(r.length):n}function X(e){let t=e.replace(/_/g,` `);return t===`ssls`?`SSLs`:t.charAt(0).toUpperCase()+t.slice(1)}function Ne({id:e,label:t,onSearch:n}){let[r,i]=W(``);return z`<form class="search" role="search" onSubmit=${e=>{e.preventDefault(),n(r.trim())}}>
    <label for=${e}>${t}</label>
    <input id=${e} type="search" value=${r} onInput=${e=>i(e.currentTarget.value)} />
    <button type="submit">Search</button>
  </form>`}function Pe({page:e,size:t,total:n,setPage:r}){let i=Math.max(1,Math.ceil(n/t));return z`<nav class="pager" aria-label="Pages">
    <button type="button" disabled=${e<=1} onClick=${()=>r(e-1)}>Previous</button>
    <span>Page ${e} of ${i} · ${n} in all</span>
    <button type="button" disabled=${e>=i} onClick=${()=>r(e+1)}>Next</button>
  </nav>`}var Fe=20;function Ie(e,t,n){if(e&&typeof e==`object`&&!Array.isArray(e)){for(let r of Object.keys(e))Ie(e[r],t?`${t}.${r}`:r,n);!Object.keys(e).length&&t&&(n[t]=`{}`)}else t&&(n[t]=JSON.stringify(e));return n}function Le(e,t){let n=Ie(e??{},``,{}),r=Ie(t??{},``,{}),i=[...new Set([...Object.keys(n),...Object.keys(r)])].sort(),a=[];for(let e of i)n[e]!==r[e]&&(e in n&&a.push([`-`,e,n[e]]),e in r&&a.push([`+`,e,r[e]]));return a}function Re(){let[e,t]=W(1),[n,r]=W(``),[i,a]=W(null),[o,s]=W(``);return G(()=>{(async()=>{let t=await J(`GET`,`/ui/api/audit?page=${e}&page_size=${Fe}&q=${encodeURIComponent(n)}`);t.ok?(a(t.data),s(``)):s(Y(t))})()},[e,n]),z`<section aria-labelledby="audit-title">
    <h1 id="audit-title">Audit log</h1>
    <${Ne} id="audit-search" label=${`Search`} onSearch=${e=>{t(1),r(e)}} />
    ${o&&z`<p class="error" role="alert">${o}</p>`}
    ${i&&!i.enabled&&z`<p class="notice">The audit log is off on this node (deployment.admin.audit_log).</p>`}
    ${i&&z`<ol class="audit">
      ${i.list.length===0&&z`<li class="empty">No write recorded.</li>`}
      ${i.list.map(e=>z`<li>
        <details>
          <summary><time>${e.time}</time> · <strong>${e.key_name||`anonymous`}</strong>
            ${e.client?` from ${e.client}`:``} · <code>${e.method} ${e.path}</code> · revision ${e.revision}</summary>
          ${(e.changes||[]).map(e=>z`<div class="change"><h3>${e.key}
            ${e.before==null?` (created)`:e.after==null?` (deleted)`:``}</h3>
            <pre class="diff">${Le(e.before,e.after).map(([e,t,n])=>z`<span class=${e===`+`?`add`:`del`}>${e} ${t}: ${n}</span>`)}</pre></div>`)}
        </details></li>`)}
    </ol>
    <${Pe} page=${e} size=${Fe} total=${i.total} setPage=${t} />`}
  </section>`}var ze=[`GET`,`POST`,`PUT`,`PATCH`,`DELETE`,`HEAD`,`OPTIONS`];function Be(){let[e,t]=W(`GET`),[n,r]=W(`/`),[i,a]=W(``),[o,s]=W(``),[c,l]=W(null),[u,d]=W(``),f=async t=>{t.preventDefault();let r=n.trim(),a=i.trim(),s=/^https?:\/\/([^/]+)(\/.*)?$/i.exec(r);s&&(a||=s[1],r=s[2]||`/`);let c=new URLSearchParams({uri:r,method:e});a&&c.set(`host`,a);for(let e of o.split(`
`)){let t=e.indexOf(`:`);t>0&&c.set(`header_${e.slice(0,t).trim()}`,e.slice(t+1).trim())}let u=await J(`GET`,`${q}/explain?${c}`);u.ok?(d(``),l(u.data)):(d(Y(u)),l(null))},p=c&&c.matched;return z`<section aria-labelledby="explain-title">
    <h1 id="explain-title">Explain a request</h1>
    <form class="explain" onSubmit=${f}>
      <div class="field"><label for="x-method">Method</label>
        <select id="x-method" value=${e} onChange=${e=>t(e.currentTarget.value)}>
          ${ze.map(e=>z`<option>${e}</option>`)}</select></div>
      <div class="field grow"><label for="x-url">URL or path</label>
        <input id="x-url" type="text" value=${n} onInput=${e=>r(e.currentTarget.value)} required /></div>
      <div class="field"><label for="x-host">Host</label>
        <input id="x-host" type="text" value=${i} onInput=${e=>a(e.currentTarget.value)} /></div>
      <div class="field wide"><label for="x-headers">Headers (Name: value, one per line)</label>
        <textarea id="x-headers" rows="3" value=${o} onInput=${e=>s(e.currentTarget.value)}></textarea></div>
      <button type="submit" class="primary">Explain</button>
    </form>
    ${u&&z`<p class="error" role="alert">${u}</p>`}
    ${c&&z`<div class="explain-result">
      <h2>Matched route</h2>
      ${p?z`<dl class="facts" id="matched">
          <dt>Route</dt><dd><a href=${`#/r/routes/edit/${p.route_id}`}>${p.route_id}</a>${p.name?` (${p.name})`:``}</dd>
          <dt>Matched uri</dt><dd>${p.matched_uri||``}</dd>
          ${p.matched_host&&z`<dt>Matched host</dt><dd>${p.matched_host}</dd>`}
          ${p.service_id&&z`<dt>Service</dt><dd>${p.service_id}</dd>`}
          <dt>Upstream</dt><dd>${p.upstream?z`${p.upstream.key}${p.upstream.type?` · ${p.upstream.type}`:``}
            ${(p.upstream.nodes||[]).map(e=>z`<span class="tag">${e.host}:${e.port} (weight ${e.weight})</span>`)}`:`none`}</dd>
          <dt>Plugin chain</dt><dd>${p.plugins&&p.plugins.length?z`<ol class="chain">${p.plugins.map(e=>z`<li>${e.phase}: ${e.name} (${e.priority})</li>`)}</ol>`:`no plugins`}</dd>
        </dl>`:z`<p id="matched" class="error">No route matches this request (404).</p>`}
      <h2>Candidates</h2>
      <table class="list"><thead><tr><th scope="col">Route</th><th scope="col">Result</th><th scope="col">Why</th></tr></thead>
        <tbody>${(c.candidates||[]).map(e=>z`<tr>
          <td>${e.route_id}${e.name?` (${e.name})`:``}</td><td><span class=${`tag ${e.result.replace(` `,`-`)}`}>${e.result}</span></td>
          <td><ul class="reasons">${(e.reasons||[]).map(e=>z`<li>${e}</li>`)}</ul></td></tr>`)}
          ${(c.candidates||[]).length===0&&z`<tr><td colspan="3" class="empty">No route's uri matches the path.</td></tr>`}
        </tbody></table>
      <details><summary>Raw answer</summary><pre>${JSON.stringify(c,null,2)}</pre></details>
    </div>`}
  </section>`}var Ve=2e3,He=15;function Ue(e,t,n){let r=n.reduce((e,t)=>e+t,0);if(!r)return null;let i=e*r,a=0;for(let e=0;e<n.length;e++){if(a+n[e]>=i&&n[e]>0){let r=e===0?0:t[e-1];return r+((e<t.length?t[e]:t[t.length-1])-r)*((i-a)/n[e])}a+=n[e]}return t[t.length-1]}function We(e){return e.map((t,n)=>t-(n?e[n-1]:0))}function Ge(e){let t=e[e.length-1],n=e[0],r=new Map(n.routes.map(e=>[e.route,e])),i=Math.max(.001,t.time-n.time);return t.routes.map(t=>{let n=r.get(t.route),a=n&&e.length>1?t.total-n.total:0,o=n&&a>0?We(t.counts).map((e,t)=>e-We(n.counts)[t]):We(t.counts),s=e=>Ue(e,t.buckets,o);return{...t,rate:e.length>1?a/i:null,p50:s(.5),p90:s(.9),p99:s(.99),windowed:a>0}})}var Ke=e=>e===null?`–`:`${e<10?e.toFixed(1):Math.round(e)} ms`;function qe(){let[e,t]=W([]),[n,r]=W([]),[i,a]=W(``),[o,s]=W(null),c=be([]);G(()=>{let e=!1,n,i=async()=>{let[o,l]=await Promise.all([J(`GET`,`/ui/api/metrics`),J(`GET`,`/ui/api/health`)]);e||(o.ok?(c.current=[...c.current,o.data].slice(-15),t(c.current),a(``)):a(Y(o)),l.ok&&Array.isArray(l.data)&&r(l.data),s(new Date),n=setTimeout(i,Ve))};return i(),()=>{e=!0,clearTimeout(n)}},[]);let l=e[e.length-1],u=e.length?Ge(e):[];return z`<section aria-labelledby="live-title">
    <div class="bar"><h1 id="live-title">Live</h1>
      <p class="hint" aria-live="polite">${o?`Updated ${o.toLocaleTimeString()} · every ${Ve/1e3} s`:`Loading…`}</p></div>
    ${i&&z`<p class="error" role="alert">${i}</p>`}
    ${l&&!l.enabled&&z`<p class="notice">The prometheus plugin is not loaded on this node:
      add it to the node config's <code>plugins</code> list to see traffic here.</p>`}
    <h2>Routes</h2>
    <p class="hint">Counted for routes that run the <code>prometheus</code> plugin (on the route, or in a global rule). Rates and percentiles over the last ${He*Ve/1e3} s (since start when idle).</p>
    <table class="list" id="live-routes">
      <thead><tr><th scope="col">Route</th><th scope="col">Requests</th><th scope="col">req/s</th>
        <th scope="col">2xx</th><th scope="col">3xx</th><th scope="col">4xx</th><th scope="col">5xx</th>
        <th scope="col">p50</th><th scope="col">p90</th><th scope="col">p99</th></tr></thead>
      <tbody>
        ${u.length===0&&z`<tr><td colspan="10" class="empty">No request counted yet.</td></tr>`}
        ${u.map(e=>z`<tr data-route=${e.route}>
          <td>${e.route?z`<a href=${`#/r/routes/edit/${e.route}`}>${e.route}</a>`:`(no route)`}</td>
          <td class="num total">${e.total}</td><td class="num">${e.rate===null?`–`:e.rate.toFixed(2)}</td>
          <td class="num">${e.status[`2xx`]}</td><td class="num">${e.status[`3xx`]}</td>
          <td class="num">${e.status[`4xx`]}</td><td class="num">${e.status[`5xx`]}</td>
          <td class="num">${Ke(e.p50)}</td><td class="num">${Ke(e.p90)}</td><td class="num">${Ke(e.p99)}</td></tr>`)}
      </tbody>
    </table>
    <h2>Upstream health</h2>
    <p class="hint">Upstreams with health checks (<code>checks</code>) and more than one node.</p>
    <table class="list" id="live-health">
      <thead><tr><th scope="col">Upstream</th><th scope="col">Node</th><th scope="col">Status</th>
        <th scope="col">Successes</th><th scope="col">HTTP failures</th><th scope="col">TCP failures</th><th scope="col">Timeouts</th></tr></thead>
      <tbody>
        ${n.length===0&&z`<tr><td colspan="7" class="empty">No upstream has health checks.</td></tr>`}
        ${n.flatMap(e=>(e.nodes||[]).map(t=>z`<tr>
          <td>${e.name}</td><td>${t.ip}:${t.port}</td>
          <td><span class=${`tag ${t.status}`}>${t.status}</span></td>
          <td class="num">${(t.counter||{}).success??0}</td><td class="num">${(t.counter||{}).http_failure??0}</td>
          <td class="num">${(t.counter||{}).tcp_failure??0}</td><td class="num">${(t.counter||{}).timeout_failure??0}</td></tr>`))}
      </tbody>
    </table>
  </section>`}var Je=[`username`,`name`,`desc`,`uri`,`uris`,`host`,`hosts`,`methods`,`upstream_id`,`service_id`,`plugin_config_id`,`group_id`,`type`,`nodes`,`scheme`,`snis`,`cert`,`key`,`content`,`plugins`,`upstream`],Ye=new Set([`id`,`create_time`,`update_time`]),Xe=new Set([`cert`,`key`,`content`,`certs`,`keys`]);function Ze(e){return e&&(e.type===`string`||e.type===`integer`||e.type===`number`)}function Qe(e){if(!e||typeof e!=`object`)return`json`;if(Array.isArray(e.enum))return`enum`;let t=e.anyOf||e.oneOf;if(!e.type&&Array.isArray(t)&&t.every(Ze)||e.type===`string`)return`text`;if(e.type===`integer`||e.type===`number`)return`number`;if(e.type===`boolean`)return`bool`;if(e.type===`array`&&e.items){if(Array.isArray(e.items.enum))return`enumlist`;if(e.items.type===`string`)return`list`}return`json`}function $e(e,t=!1){let n=e&&e.properties||{},r=Object.keys(n).filter(e=>!Ye.has(e)),i=new Set(e&&e.required||[]),a=e=>i.has(e)?-1:Je.includes(e)?Je.indexOf(e):1e3;r.sort((e,t)=>a(e)-a(t)||e.localeCompare(t));let o=t?e=>!e.startsWith(`_`):e=>a(e)<1e3;return{props:n,required:i,common:r.filter(o),more:r.filter(e=>!o(e))}}function et({id:e,value:t,onChange:n,invalid:r,describedBy:i,placeholder:a}){let[o,s]=W(t===void 0?``:JSON.stringify(t,null,2)),[c,l]=W(``);return G(()=>{let e=!1;try{e=o.trim()?JSON.stringify(JSON.parse(o))===JSON.stringify(t):t===void 0}catch{}!e&&!c&&s(t===void 0?``:JSON.stringify(t,null,2))},[JSON.stringify(t)]),z`<textarea id=${e} class="json" rows=${Math.min(12,Math.max(3,o.split(`
`).length))}
      value=${o} onInput=${e=>{let t=e.currentTarget.value;if(s(t),!t.trim())l(``),n(void 0);else try{n(JSON.parse(t)),l(``)}catch(e){l(`not valid JSON: ${e.message}`)}}} spellcheck="false" placeholder=${a||`JSON`}
      aria-invalid=${r||c?`true`:`false`} aria-describedby=${i}></textarea>
    ${c&&z`<p class="hint bad" role="status">${c}</p>`}`}function tt({name:e,schema:t,value:n,set:r,error:i,readOnly:a,required:o,prefix:s}){let c=`f-${s}${e}`,l=`err-${s}${e}`,u=Qe(t),d=t&&t.description,f={id:c,disabled:a,"aria-invalid":i?`true`:`false`,"aria-describedby":i?l:void 0},p;if(u===`enum`){let e=t.enum,i=e.findIndex(e=>e===n);p=z`<select ...${f} value=${i<0?``:String(i)}
        onChange=${t=>r(t.currentTarget.value===``?void 0:e[Number(t.currentTarget.value)])}>
      <option value="">${t.default===void 0?`(unset)`:`(default: ${t.default})`}</option>
      ${e.map((e,t)=>z`<option value=${String(t)}>${String(e)}</option>`)}
    </select>`}else if(u===`text`){let i=e=>r(e.currentTarget.value===``?void 0:e.currentTarget.value);p=Xe.has(e)||(t.maxLength||0)>4096?z`<textarea ...${f} rows="4" value=${n??``} onInput=${i}></textarea>`:z`<input ...${f} type="text" value=${n??``} onInput=${i} />`}else if(u===`number`)p=z`<input ...${f} type="number" value=${n??``}
      step=${t.type===`integer`?`1`:`any`}
      onInput=${e=>{let t=e.currentTarget.value;r(t===``?void 0:Number(t))}} />`;else if(u===`bool`)p=z`<input ...${f} type="checkbox" checked=${!!n}
      onChange=${e=>r(e.currentTarget.checked?!0:void 0)} />`;else if(u===`list`)p=z`<textarea ...${f} rows="3" value=${Array.isArray(n)?n.join(`
`):``}
      onInput=${e=>{let t=e.currentTarget.value.split(`
`).map(e=>e.trim()).filter(Boolean);r(t.length?t:void 0)}}></textarea>
      <p class="hint">One per line.</p>`;else if(u===`enumlist`){let i=Array.isArray(n)?n:[];p=z`<div class="checks" role="group" aria-labelledby=${`lbl-${s}${e}`}>
      ${t.items.enum.map(e=>z`<label class="check"><input type="checkbox" disabled=${a}
        checked=${i.includes(e)} onChange=${t=>{let n=t.currentTarget.checked?[...i,e]:i.filter(t=>t!==e);r(n.length?n:void 0)}} /> ${String(e)}</label>`)}
    </div>`}else p=z`<${et} id=${c} value=${n} onChange=${r} invalid=${!!i}
      describedBy=${i?l:void 0}
      placeholder=${e===`nodes`?`{"127.0.0.1:1980": 1}`:`JSON`} />`;return z`<div class=${`field${i?` has-error`:``}`} data-field=${s+e}>
    <label id=${`lbl-${s}${e}`} for=${u===`enumlist`?void 0:c}>${e}${o?` *`:``}</label>
    ${p}
    ${d&&z`<p class="hint">${d}</p>`}
    ${i&&z`<p id=${l} class="field-error" role="alert">${i}</p>`}
  </div>`}function nt({schema:e,value:t,onChange:n,errors:r,readOnly:i,prefix:a=``,pluginType:o}){let{props:s,required:c,common:l,more:u}=$e(e,!!a),d=e=>r=>{let i={...t};r===void 0?delete i[e]:i[e]=r,n(i)},f=e=>e===`plugins`&&!a?z`<${rt} key=${e} value=${t[e]} set=${d(e)} error=${r[e]}
        readOnly=${i} schemaType=${o} />`:z`<${tt} key=${e} name=${e} schema=${s[e]} value=${t[e]} prefix=${a}
        set=${d(e)} error=${r[e]} readOnly=${i} required=${c.has(e)} />`,p=u.some(e=>t[e]!==void 0||r[e]);return z`<div class="schema-form">
    ${l.map(f)}
    ${u.length>0&&z`<details open=${p}><summary>More fields (${u.length})</summary>
      ${u.map(f)}</details>`}
    ${!l.length&&!u.length&&z`<p class="hint">No fixed fields: use the JSON editor.</p>`}
  </div>`}function rt({value:e,set:t,error:n,readOnly:r,schemaType:i}){let a=e&&typeof e==`object`?e:{},[o,s]=W([]),[c,l]=W({});G(()=>{J(`GET`,`${q}/plugins/list`).then(e=>s(e.ok&&Array.isArray(e.data)?e.data:[]))},[]),G(()=>{for(let e of Object.keys(a))c[e]===void 0&&(c[e]=null,(async()=>{let t=i?await J(`GET`,`${q}/plugins/${e}?schema_type=${i}`):null;t&&t.ok||(t=await J(`GET`,`${q}/plugins/${e}`)),l(n=>({...n,[e]:t.ok?t.data:{properties:{}}}))})())},[Object.keys(a).join(`,`)]);let u=e=>n=>t({...a,[e]:n}),d=e=>{let n={...a};delete n[e],t(Object.keys(n).length?n:void 0)};return z`<div class=${`field${n?` has-error`:``}`} data-field="plugins">
    <span class="label" id="lbl-plugins">plugins</span>
    ${Object.keys(a).length===0&&z`<p class="hint">No plugin.</p>`}
    ${Object.keys(a).map(e=>z`<fieldset class="plugin" key=${e} data-plugin=${e}>
      <legend>${e}</legend>
      ${c[e]?z`<${nt} schema=${c[e]} prefix=${`${e}.`} readOnly=${r}
          value=${a[e]&&typeof a[e]==`object`?a[e]:{}} onChange=${u(e)} errors=${{}} />`:z`<p class="hint">Loading the schema…</p>`}
      ${!r&&z`<button type="button" class="danger" onClick=${()=>d(e)}
        aria-label=${`Remove plugin ${e}`}>Remove</button>`}
    </fieldset>`)}
    ${!r&&z`<label for="add-plugin" class="inline">Add a plugin</label>
      <select id="add-plugin" onChange=${e=>{let n=e.currentTarget.value;e.currentTarget.value=``,n&&!a[n]&&t({...a,[n]:{}})}}>
        <option value="">(choose)</option>
        ${o.filter(e=>!a[e]).map(e=>z`<option value=${e}>${e}</option>`)}
      </select>`}
    ${n&&z`<p id="err-plugins" class="field-error" role="alert">${n}</p>`}
  </div>`}function it(e,t){let n=t&&t.properties||{},r=/property "([^"]+)"/.exec(e||``);if(r&&n[r[1]])return r[1];let i=/failed to fetch (\w+) info by/.exec(e||``);if(i){let e=i[1]===`consumer_group`?`group_id`:`${i[1]}_id`;if(n[e])return e}for(let[t,r]of[[`upstream_id`,/upstream id|upstream_id/],[`service_id`,/service id|service_id/],[`plugin_config_id`,/plugin_config|plugin config/],[`group_id`,/consumer group|group_id/],[`plugins`,/plugin/]])if(n[t]&&r.test(e||``))return t;return null}var at=(function(){let e=typeof document<`u`&&document.createElement(`link`).relList;return e&&e.supports&&e.supports(`modulepreload`)?`modulepreload`:`preload`})(),ot=function(e){return`/ui/`+e},st={},ct={},lt=function(e){return e.pathname.endsWith(`.css`)},ut=function(e,t,n){if(t in e)return e[t];let r=n();if(!r){e[t]=void 0;return}let i=r.then(()=>{e[t]=void 0},n=>{throw delete e[t],n});return e[t]=i,i},dt=function(e,t,n){let r=Promise.resolve();if(t&&t.length>0){let e,i=document.querySelector(`meta[property=csp-nonce]`),a=i?.nonce||i?.getAttribute(`nonce`);function o(e){return Promise.all(e.map(e=>Promise.resolve(e).then(e=>({status:`fulfilled`,value:e}),e=>({status:`rejected`,reason:e}))))}function s(e){return import.meta.resolve?new URL(import.meta.resolve(e)):new URL(e,import.meta.url)}r=o(t.map(t=>{t=ot(t,n);let r=s(t),i=lt(r);return ut(st,r.href,()=>{if(e===void 0){e={all:new Set,styles:new Set};let t=document.getElementsByTagName(`link`);for(let n=t.length-1;n>=0;n--){let r=t[n];e.all.add(r.href),r.rel===`stylesheet`&&e.styles.add(r.href)}}let t=i?e.styles:e.all,n=i?ct[r.href]:void 0;if(!n&&t.has(r.href))return;let o=document.createElement(`link`);if(o.rel=i?`stylesheet`:at,i||(o.as=`script`),o.crossOrigin=``,o.href=r.href,a&&o.setAttribute(`nonce`,a),n&&delete ct[r.href],n?.isConnected?n.replaceWith(o):document.head.appendChild(o),i)return new Promise((e,t)=>{let n=i=>{o.removeEventListener(`load`,n),o.removeEventListener(`error`,n),i.type===`error`?(ct[r.href]=o,t(Error(`Unable to preload CSS for ${r}`))):e(i)};o.addEventListener(`load`,n),o.addEventListener(`error`,n)})})}).filter(e=>e!==void 0))}function i(e){let t=new Event(`vite:preloadError`,{cancelable:!0});if(t.payload=e,window.dispatchEvent(t),!t.defaultPrevented)throw e}return r.then(t=>{for(let e of t||[])e.status===`rejected`&&i(e.reason);return e().catch(i)})},Z=null;async function ft(){return Z||=await dt(()=>import(`./yaml.js`),[]),Z}function pt(e,t){return t===`yaml`?Z.stringify(e,{lineWidth:0,aliasDuplicateObjects:!1}):JSON.stringify(e,null,2)}function mt(e,t){let n=t===`yaml`?`YAML`:`JSON`,r;try{r=t===`yaml`?Z.parse(e):JSON.parse(e)}catch(e){return Error(`not valid ${n}: ${String(e.message).split(`
`)[0]}`)}return!r||typeof r!=`object`||Array.isArray(r)?Error(`not valid ${n}: the object must be a mapping`):r}function ht({format:e,text:t,bad:n,readOnly:r,onText:i,onFormat:a}){let o=e===`yaml`?`YAML`:`JSON`,s=(t,r)=>z`<label class="check"><input type="radio" name="raw-format"
      value=${t} checked=${e===t} disabled=${!!n&&e!==t}
      onChange=${()=>a(t)} /> ${r}</label>`;return z`<fieldset class="pane">
    <legend>Raw</legend>
    <div class="checks" role="radiogroup" aria-label="Raw format">
      ${s(`json`,`JSON`)}${s(`yaml`,`YAML`)}
    </div>
    <label for="raw-text" class="sr-only">Raw ${o}</label>
    <textarea id="raw-text" class="json raw" value=${t} onInput=${e=>i(e.currentTarget.value)}
      readOnly=${r} spellcheck="false" aria-invalid=${n?`true`:`false`}
      aria-describedby=${n?`raw-error`:void 0}></textarea>
    ${n&&z`<p id="raw-error" class="hint bad" role="alert">${n}</p>`}
    ${n&&z`<p class="hint">Fix it to switch format or save.</p>`}
  </fieldset>`}var Q=20;function gt(e,t){if(!t||typeof t!=`object`)return``;if(e===`routes`||e===`stream_routes`)return[...t.uri?[t.uri]:t.uris||[],t.upstream_id?`upstream ${t.upstream_id}`:``,t.service_id?`service ${t.service_id}`:``].filter(Boolean).join(` · `);if(e===`upstreams`&&t.nodes){let e=Array.isArray(t.nodes)?t.nodes.map(e=>`${e.host}:${e.port}`):Object.keys(t.nodes);return`${t.type||`roundrobin`} · ${e.join(`, `)}`}return e===`ssls`?(t.snis||[t.sni]).filter(Boolean).join(`, `):t.plugins?Object.keys(t.plugins).join(`, `):``}function _t({kind:e,base:t,hrefBase:n,session:r,title:i,saved:a}){let[o,s]=W(1),[c,l]=W(``),[u,d]=W(null),[f,p]=W(``),[m,h]=W(null),[g,_]=W(a?`Saved ${a}.`:``),v=r.role===`viewer`,y=e===`consumers`||e===`credentials`||e===`secrets`||e===`plugin_metadata`,b=async()=>{let n=await J(`GET`,t+(y?``:`?page=${o}&page_size=${Q}${c?`&name=${encodeURIComponent(c)}`:``}`));if(!n.ok){p(Y(n)),d({list:[],total:0});return}p(``);let r=n.data&&n.data.list||[],i=n.data&&n.data.total||r.length;y&&(r=r.filter(t=>!c||JSON.stringify([Me(e,t),t.value]).includes(c)),i=r.length,r=r.slice((o-1)*Q,o*Q)),d({list:r,total:i})};G(()=>{b()},[t,o,c]);let x=async(e,n)=>{let r=await J(`DELETE`,`${t}/${e}${n?`?force=true`:``}`);r.ok?(h(null),_(`Deleted ${e}.`),b()):h({id:e,error:Y(r),referenced:/still using|in use|referenced/i.test(Y(r))})};return z`<section aria-labelledby="list-title">
    <div class="bar">
      <h1 id="list-title">${i||X(e)}</h1>
      ${!v&&z`<a class="button primary" href=${`${n}/new`}>Create</a>`}
    </div>
    <${Ne} id="search" label=${y?`Search`:`Search by name`} onSearch=${e=>{s(1),l(e)}} />
    ${g&&z`<p class="notice" role="status">${g}</p>`}
    ${f&&z`<p class="error" role="alert">${f}</p>`}
    ${u===null?z`<p>Loading…</p>`:z`
    <table class="list">
      <thead><tr><th scope="col">ID</th><th scope="col">Name</th><th scope="col">Summary</th>
        <th scope="col">Updated</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>
        ${u.list.length===0&&z`<tr><td colspan="5" class="empty">Nothing here yet.</td></tr>`}
        ${u.list.map(t=>{let r=Me(e,t),i=t.value||{};return z`<tr key=${r} data-id=${r}>
            <td><a href=${`${n}/edit/${r}`}>${r}</a></td>
            <td>${i.name||i.username||i.desc||``}</td>
            <td class="summary">${gt(e,i)}</td>
            <td>${i.update_time?new Date(i.update_time*1e3).toLocaleString():``}</td>
            <td class="actions">
              <a class="button" href=${`${n}/edit/${r}`}>${v?`View`:`Edit`}</a>
              ${!v&&z`<button type="button" class="danger" onClick=${()=>h({id:r})}
                aria-label=${`Delete ${r}`}>Delete</button>`}
            </td>
          </tr>`})}
      </tbody>
    </table>
    <${Pe} page=${o} size=${Q} total=${u.total} setPage=${s} />`}
    ${m&&z`<div class="confirm" role="alertdialog" aria-labelledby="confirm-text">
      <p id="confirm-text">Delete ${X(e).replace(/s$/,``).toLowerCase()} <strong>${m.id}</strong>?</p>
      ${m.error&&z`<p class="error" role="alert">${m.error}</p>`}
      <button type="button" class="danger" onClick=${()=>x(m.id,!1)}>Delete</button>
      ${m.referenced&&z`<button type="button" class="danger" onClick=${()=>x(m.id,!0)}>Delete anyway (force)</button>`}
      <button type="button" onClick=${()=>h(null)}>Cancel</button>
    </div>`}
  </section>`}function vt(e){let t={...e||{}};return delete t.create_time,delete t.update_time,t}function $({kind:e,base:t,hrefBase:n,id:r,session:i,spec:a,children:o}){let s=i.role===`viewer`,[c,l]=W(null),[u,d]=W(null),[f,p]=W(``),[m,h]=W(`json`),[g,_]=W(``),[v,y]=W(``),[b,x]=W({}),[S,C]=W(``),[w,T]=W(!1);G(()=>{(async()=>{let n=await J(`GET`,`${q}/schema/${e}`);if(l(n.ok?n.data:{properties:{}}),r){let n=await J(`GET`,`${t}/${r}`);if(!n.ok){C(Y(n)),d({});return}let i=vt(n.data.value);e!==`consumers`&&delete i.id,d(i),_(pt(i,`json`))}else d({}),_(`{}`)})()},[e,r,t]);let E=e=>{d(e),_(pt(e,m)),y(``)},ee=e=>{_(e);let t=mt(e,m);t instanceof Error?y(t.message):(d(t),y(``))},D=async e=>{if(!(v||e===m)){if(e===`yaml`)try{await ft()}catch(e){C(`cannot load the YAML editor: ${e.message}`);return}h(e),_(pt(u,e))}},O=async i=>{if(i.preventDefault(),v){C(`Not saved: the raw editor's text is ${v}.`);return}T(!0);let a,o=r||f.trim();if(a=e===`consumers`?await J(`PUT`,t,u):o?await J(`PUT`,`${t}/${o}`,u):await J(`POST`,t,u),T(!1),a.ok){location.hash=`${n}?saved=${encodeURIComponent(Me(e,a.data||{})||o)}`;return}let s=Y(a),l=it(s,c);x(l?{[l]:s}:{}),C(l?`Not saved: see the field ${l}.`:s)};if(c===null||u===null)return z`<p>Loading…</p>`;let k=a&&a.two_part_id?`ID (manager/id, e.g. vault/1)`:e===`plugin_metadata`?`Plugin name`:`ID`,A=e===`plugin_metadata`||e===`credentials`||a&&!a.post&&e!==`consumers`;return z`<section aria-labelledby="editor-title">
    <div class="bar">
      <h1 id="editor-title">${r?`${s?``:`Edit `}${X(e).replace(/s$/,``)} ${r}`:`New ${X(e).replace(/s$/,``).toLowerCase()}`}</h1>
      <a class="button" href=${n}>Back to the list</a>
    </div>
    ${s&&z`<p class="notice">Read-only: your key has the viewer role.</p>`}
    <form onSubmit=${O} aria-describedby=${S?`form-error`:void 0}>
      ${S&&z`<p id="form-error" class="error" role="alert">${S}</p>`}
      ${!r&&e!==`consumers`&&z`<div class="field">
        <label for="f-__id">${k}${A?` *`:` (empty: generated)`}</label>
        <input id="f-__id" type="text" value=${f} onInput=${e=>p(e.currentTarget.value)} required=${A} />
      </div>`}
      <div class="editor">
        <fieldset class="pane">
          <legend>Form</legend>
          <${nt} schema=${c} value=${u} onChange=${E} errors=${b} readOnly=${s}
            pluginType=${e===`consumers`||e===`credentials`?`consumer`:``} />
        </fieldset>
        <${ht} format=${m} text=${g} bad=${v} readOnly=${s}
          onText=${ee} onFormat=${D} />
      </div>
      ${!s&&z`<div class="bar"><button type="submit" class="primary" disabled=${w}>Save</button></div>`}
    </form>
    ${o}
  </section>`}function yt(){let[e,t]=W(location.hash||`#/r/routes`);return G(()=>{let e=()=>t(location.hash||`#/r/routes`);return addEventListener(`hashchange`,e),()=>removeEventListener(`hashchange`,e)},[]),e}function bt({onIn:e,expired:t,keyless:n}){let[r,i]=W(``),[a,o]=W(t?`Your session ended: ${n?`open the dashboard`:`sign in`} again.`:``),[s,c]=W(!1),l=be(null);return G(()=>{l.current&&l.current.focus()},[]),z`<main class="signin">
    <form onSubmit=${async t=>{t.preventDefault(),c(!0);let a=await J(`POST`,`/ui/api/session`,n?{}:{key:r});c(!1),i(``),a.ok?e(a.data):o(a.status===401?`Wrong key.`:Y(a))}} aria-labelledby="signin-title">
      <h1 id="signin-title">Pylon dashboard</h1>
      ${n?z`<p>${xt}</p>`:z`<p>Sign in with an Admin API key
        (<code>deployment.admin.admin_key</code>). The key is exchanged for a session; it is
        not kept in this page.</p>`}
      ${a&&z`<p class="error" role="alert">${a}</p>`}
      ${!n&&z`<div class="field">
        <label for="key">Admin API key</label>
        <input id="key" ref=${l} type="password" autocomplete="current-password" value=${r}
          onInput=${e=>i(e.currentTarget.value)} required />
      </div>`}
      <button type="submit" class="primary" disabled=${s}>${n?`Open the dashboard`:`Sign in`}</button>
    </form>
  </main>`}var xt=`This node has no Admin API key (deployment.admin.admin_key_required: false): anyone allowed to reach the Admin API can change it.`;function St(e,t){let[n,r]=e.replace(/^#/,``).split(`?`),i=new URLSearchParams(r||``).get(`saved`)||``,a=n.split(`/`).filter(Boolean).map(decodeURIComponent),o=Object.fromEntries(t.kinds.map(e=>[e.name,e]));if(a[0]===`explain`)return z`<${Be} />`;if(a[0]===`live`)return z`<${qe} />`;if(a[0]===`audit`)return z`<${Re} />`;if(a[0]===`c`&&a[1]){let n=a[1],r=`${q}/consumers/${encodeURIComponent(n)}/credentials`,s=`#/c/${encodeURIComponent(n)}`;return a[2]===`new`||a[2]===`edit`?z`<${$} key=${e} kind="credentials" base=${r} hrefBase=${s}
        id=${a[2]===`edit`?a.slice(3).join(`/`):null} session=${t} spec=${{post:!1}} />`:Ct(n,t,o,i)}let s=a[0]===`r`&&o[a[1]]?a[1]:`routes`,c=`${q}/${s}`,l=`#/r/${s}`;if(a[2]===`new`)return z`<${$} key=${e} kind=${s} base=${c} hrefBase=${l} id=${null} session=${t} spec=${o[s]} />`;if(a[2]===`edit`&&a[3]){let n=a.slice(3).join(`/`);return s===`consumers`?Ct(n,t,o,``):z`<${$} key=${e} kind=${s} base=${c} hrefBase=${l} id=${n} session=${t} spec=${o[s]} />`}return z`<${_t} key=${e} kind=${s} base=${c} hrefBase=${l} session=${t} saved=${i} />`}function Ct(e,t,n,r){let i=`${q}/consumers/${encodeURIComponent(e)}/credentials`;return z`<${$} key=${`consumer-${e}`} kind="consumers" base=${`${q}/consumers`}
      hrefBase="#/r/consumers" id=${e} session=${t} spec=${n.consumers}>
    <${_t} kind="credentials" base=${i} hrefBase=${`#/c/${encodeURIComponent(e)}`}
      session=${t} title=${`Credentials of ${e}`} saved=${r} />
  <//>`}function wt({session:e,onOut:t}){let n=yt(),r=n.replace(/^#/,``).split(`?`)[0],i=(e,t)=>z`<li><a href=${e} aria-current=${r===e.slice(1)||r.startsWith(`${e.slice(1)}/`)?`page`:void 0}>${t}</a></li>`;return z`<div class="shell">
    <a class="skip" href="#main">Skip to content</a>
    <header class="top">
      <span class="brand">Pylon</span>
      <span class="who">Signed in as <strong>${e.name}</strong>
        <span class=${`role ${e.role}`}>${e.role}</span></span>
      <button type="button" onClick=${async()=>{await J(`DELETE`,`/ui/api/session`),t()}}>Sign out</button>
    </header>
    <nav class="side" aria-label="Sections">
      <h2>Resources</h2>
      <ul>${e.kinds.map(e=>i(`#/r/${e.name}`,X(e.name)))}</ul>
      <h2>Operate</h2>
      <ul>${i(`#/live`,`Live`)}${i(`#/explain`,`Explain`)}${i(`#/audit`,`Audit log`)}</ul>
    </nav>
    <main id="main" tabindex="-1">
      ${e.key_required===!1&&z`<p class="notice warn">${xt}</p>`}
      ${St(n,e)}</main>
  </div>`}function Tt(){let[e,t]=W(void 0),[n,r]=W(!1),[i,a]=W(!1),o=e=>{je(e.csrf,()=>{r(!0),t(null)}),r(!1),a(e.key_required===!1),t(e)};return G(()=>{(async()=>{let e=await J(`GET`,`/ui/api/session`);if(e.ok){o(e.data);return}let n=await J(`GET`,`/ui/api/sign-in`),r=n.ok&&n.data&&n.data.key_required===!1;a(r);let i=r?await J(`POST`,`/ui/api/session`,{}):null;i&&i.ok?o(i.data):t(null)})()},[]),e===void 0?z`<p class="loading">Loading…</p>`:e===null?z`<${bt} onIn=${o} expired=${n} keyless=${i} />`:z`<${wt} session=${e} onOut=${()=>{je(``),t(null)}} />`}L(z`<${Tt} />`,document.getElementById(`app`));